"""Where everything lives, which tier runs, and which device computes.

One place resolves paths, tier and device. Defaults come first, then environment variables, then explicit
overrides (the CLI passes its flags here). Nothing in this module touches the network or imports torch at
import time.

Environment variables
---------------------
BRAINDIFF_HOME
    Workspace for prepared data, features, regressors and bundles you make (default ``~/.braindiff``).
BRAINDIFF_TIER
    ``demo`` (default: the simulated subject and the committed small models) or ``real`` (NSD + checkpoints).
BRAINDIFF_BUNDLES
    Extra folders holding bundles for the app, separated by ``os.pathsep``.
BRAINDIFF_NSD_ROOT
    Root of a local Natural Scenes Dataset copy (the folder holding ``nsddata/``, ``nsddata_betas/``, ...).
BRAINDIFF_VDVAE_CHECKPOINT
    The VDVAE imagenet64 EMA checkpoint file (``imagenet64-iter-1600000-model-ema.th``).
BRAINDIFF_VD_DIR
    A Versatile Diffusion folder in diffusers layout (image_unet, text_unet, vae, image_encoder, ...).
BRAINDIFF_EVAL_WEIGHTS
    Folder with the evaluation backbones' weight files (default: torch hub's checkpoint cache).
BRAINDIFF_DEVICE
    ``auto`` (default), ``cuda``, ``cuda:N``, ``mps`` or ``cpu``.
BRAINDIFF_DTYPE
    ``auto`` (default: float16 on CUDA, float32 elsewhere), ``float32``, ``float16`` or ``bfloat16``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "auto_threads",
    "set_cpu_threads",
    "PACKAGE_DIR",
    "ASSETS_DIR",
    "PRECOMPUTED_DIR",
    "DEMO_ASSETS_DIR",
    "DEMO_ANATOMY_DIR",
    "DEMO_ROI_HOME",
    "TIERS",
    "Settings",
    "check_in_allowed",
    "load_settings",
    "subject_folder",
    "resolve_device",
    "resolve_dtype",
]

#: The installed package: its data (the demo's assets and the shipped bundles) travels inside it, so a plain
#: ``pip install .`` (not only an editable install) finds them from any folder.
PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
PRECOMPUTED_DIR = PACKAGE_DIR / "precomputed"
DEMO_ASSETS_DIR = ASSETS_DIR / "demo"
#: The demo subject's anatomy and flatmap (written by ``braindiff demo anatomy``).
DEMO_ANATOMY_DIR = DEMO_ASSETS_DIR / "anatomy"
#: The committed ROI-studio workspace (written by ``braindiff demo export-roi``), used when a user has no demo
#: regressors of their own.
DEMO_ROI_HOME = DEMO_ASSETS_DIR / "home"

TIERS = ("demo", "real")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")


def check_in_allowed(value: Any, allowed: Iterable[Any], name: str) -> None:
    """Raise ValueError unless ``value`` is one of ``allowed``.

    Parameters
    ----------
    value : object
        The value given by the caller.
    allowed : iterable
        The accepted values.
    name : str
        The argument's name, used in the message.
    """
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}.")


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class Settings:
    """Resolved configuration: paths, tier and compute preferences.

    Attributes
    ----------
    home : Path
        Workspace root; each tier works under ``home / tier``.
    tier : str in {"demo", "real"}
        ``"demo"``: simulated subject, committed small models. ``"real"``: NSD and real checkpoints.
    bundle_dirs : tuple of Path
        Folders searched for bundles, in order (the shipped ``precomputed/`` and ``home/bundles`` first).
    nsd_root : Path or None
        Local NSD copy (real tier). For the demo tier, the simulated NSD under the workspace.
    vdvae_checkpoint : Path or None
        VDVAE weights file (real tier). The demo tier uses ``assets/demo/models``.
    vd_dir : Path or None
        Versatile Diffusion folder in diffusers layout (real tier).
    eval_weights : Path
        Folder holding evaluation backbone weight files.
    device : str
        Device preference, see :func:`resolve_device`.
    dtype : str
        Dtype preference, see :func:`resolve_dtype`.
    """

    home: Path
    tier: str = "demo"
    extra_bundle_dirs: tuple[Path, ...] = field(default_factory=tuple)
    nsd_root: Path | None = None
    vdvae_checkpoint: Path | None = None
    vd_dir: Path | None = None
    eval_weights: Path = field(default_factory=lambda: Path.home() / ".cache" / "torch" / "hub" / "checkpoints")
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        check_in_allowed(self.tier, TIERS, "tier")
        check_in_allowed(self.device.split(":")[0], DEVICES, "device")
        check_in_allowed(self.dtype, DTYPES, "dtype")

    # -- workspace layout ---------------------------------------------------------------------------------
    @property
    def workspace(self) -> Path:
        """Folder of this tier's working files: ``home / tier``."""
        return self.home / self.tier

    @property
    def demo_models_dir(self) -> Path:
        """Committed demo model weights (VDVAE and the Versatile Diffusion folder)."""
        return DEMO_ASSETS_DIR / "models"

    # -- model locations: the one place that decides which weights a tier uses --------------------------------
    @property
    def vdvae_path(self) -> Path | None:
        """Stage-1 weights of this tier: the committed demo VDVAE folder, or the real tier's checkpoint file.

        On the demo tier the committed models are always used (a set ``vdvae_checkpoint`` is a real-tier setting).
        """
        return self.demo_models_dir / "vdvae" if self.tier == "demo" else self.vdvae_checkpoint

    @property
    def vd_path(self) -> Path | None:
        """Versatile Diffusion folder of this tier: the committed demo folder, or the real tier's ``vd_dir``."""
        return self.demo_models_dir / "vd" if self.tier == "demo" else self.vd_dir

    def require_models(self) -> tuple[Path, Path]:
        """(VDVAE weights, Versatile Diffusion folder) of this tier, checked to exist.

        Raises
        ------
        FileNotFoundError
            A model not configured (real tier) or not on disk, with how to provide it.
        """
        if self.tier == "demo":
            hint = "train the demo models (`braindiff demo train-vdvae`, `braindiff demo train-diffusion`)"
        else:
            hint = "set BRAINDIFF_VDVAE_CHECKPOINT / --vdvae-checkpoint and BRAINDIFF_VD_DIR / --vd-dir"
            if self.vdvae_path is None or self.vd_path is None:
                raise FileNotFoundError(f"real tier: VDVAE checkpoint ({self.vdvae_path}) or Versatile Diffusion "
                                        f"folder ({self.vd_path}) not configured; {hint}.")
        for path in (self.vdvae_path, self.vd_path):
            if not path.exists():
                raise FileNotFoundError(f"{path}: model files missing for the {self.tier} tier; {hint}.")
        return self.vdvae_path, self.vd_path

    @property
    def eval_clip_dir(self) -> tuple[Path | None, str]:
        """CLIP image encoder for the evaluation's CLIP metric, and the metric's name.

        The real CLIP (``vd_dir / "image_encoder"``, on either tier) when present, else the demo's small CLIP,
        reported as ``"demo-CLIP"``; (None, "CLIP") when neither exists.
        """
        if self.vd_dir is not None and (self.vd_dir / "image_encoder" / "config.json").is_file():
            return self.vd_dir / "image_encoder", "CLIP"
        demo = self.demo_models_dir / "vd" / "image_encoder"
        if (demo / "config.json").is_file():
            return demo, "demo-CLIP"
        return None, "CLIP"

    @property
    def nsd_dir(self) -> Path | None:
        """The NSD-shaped folder read by ``braindiff prepare``: the simulated one for the demo tier."""
        if self.tier == "demo":
            return self.nsd_root or self.workspace / "nsd"
        return self.nsd_root

    def subject_dir(self, kind: str, subject: int | str) -> Path:
        """Per-subject working folder, e.g. ``workspace/prepared/subj01``.

        Parameters
        ----------
        kind : str in {"prepared", "features", "regressors", "encoders", "flatmap"}
            Which stage's outputs ("flatmap": the cached flatmap of an NSD subject).
        subject : int or str
            NSD subject number (1, 2, 5, 7) or ``"average"``.
        """
        check_in_allowed(kind, ("prepared", "features", "regressors", "encoders", "flatmap"), "kind")
        return self.workspace / kind / subject_folder(subject)

    @property
    def bundle_dirs(self) -> tuple[Path, ...]:
        """Folders searched for bundles: the shipped ``precomputed/``, ``home/bundles``, then extras."""
        dirs = [PRECOMPUTED_DIR, self.home / "bundles", *self.extra_bundle_dirs]
        unique: list[Path] = []
        for d in dirs:
            if d not in unique:
                unique.append(d)
        return tuple(unique)

    def with_overrides(self, **overrides: Any) -> Settings:
        """Return a copy with the non-None ``overrides`` applied."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def subject_folder(subject: int | str) -> str:
    """Folder name of a subject: ``subj01`` for 1, ``average`` for the subject average."""
    if str(subject) == "average":
        return "average"
    try:
        number = int(subject)
    except (TypeError, ValueError):
        raise ValueError(f"subject: expected an integer like 1 or 'average', got {subject!r}.") from None
    return f"subj{number:02d}"


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings` from defaults, environment variables, then ``overrides``.

    Parameters
    ----------
    **overrides
        Any :class:`Settings` field; None values are ignored (so CLI flags left unset fall through).

    Returns
    -------
    Settings
    """
    extra = tuple(
        Path(p).expanduser() for p in os.environ.get("BRAINDIFF_BUNDLES", "").split(os.pathsep) if p.strip()
    )
    env: dict[str, Any] = {
        "home": _env_path("BRAINDIFF_HOME") or Path.home() / ".braindiff",
        "tier": os.environ.get("BRAINDIFF_TIER", "demo").strip() or "demo",
        "extra_bundle_dirs": extra,
        "nsd_root": _env_path("BRAINDIFF_NSD_ROOT"),
        "vdvae_checkpoint": _env_path("BRAINDIFF_VDVAE_CHECKPOINT"),
        "vd_dir": _env_path("BRAINDIFF_VD_DIR"),
        "device": os.environ.get("BRAINDIFF_DEVICE", "auto").strip() or "auto",
        "dtype": os.environ.get("BRAINDIFF_DTYPE", "auto").strip() or "auto",
    }
    eval_weights = _env_path("BRAINDIFF_EVAL_WEIGHTS")
    if eval_weights is not None:
        env["eval_weights"] = eval_weights
    env.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("home", "nsd_root", "vdvae_checkpoint", "vd_dir", "eval_weights"):
        if isinstance(env.get(key), str):
            env[key] = Path(env[key]).expanduser()
    return Settings(**env)


def resolve_device(preference: str = "auto"):
    """Pick the torch device once, for callers to move components with ``.to()``.

    Parameters
    ----------
    preference : str, default "auto"
        ``"auto"`` takes CUDA, then MPS, then CPU. An explicit device that is not available falls back to CPU
        with a warning.

    Returns
    -------
    torch.device
    """
    import torch

    check_in_allowed(preference.split(":")[0], DEVICES, "device")
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(preference)
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }[device.type]
    if not available:
        warnings.warn(f"device {preference!r} is not available here; using the CPU.", RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    return device


def resolve_dtype(preference: str, device) -> Any:
    """Pick the compute dtype for a device.

    Parameters
    ----------
    preference : str in {"auto", "float32", "float16", "bfloat16"}
        ``"auto"``: float16 on CUDA, float32 elsewhere. Half precision on the CPU falls back to float32 with a
        warning.
    device : torch.device
        Where the models run.

    Returns
    -------
    torch.dtype
    """
    import torch

    check_in_allowed(preference, DTYPES, "dtype")
    if preference == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtype = getattr(torch, preference)
    if device.type == "cpu" and dtype == torch.float16:
        warnings.warn("float16 is slow or unsupported on the CPU; using float32.", RuntimeWarning, stacklevel=2)
        return torch.float32
    return dtype


def auto_threads(cores: int, load: float) -> int:
    """CPU threads to use: the cores that other work leaves free (at least one).

    Small models slow down several-fold when their threads compete with other processes for the cores (measured:
    the demo reconstruction ran 10x slower with 2 threads than with 1 on a 2-core machine running other work,
    and 1.3x faster on an idle one).

    Parameters
    ----------
    cores : int
        CPU cores of the machine.
    load : float
        The machine's 1-minute load average (processes wanting a core).
    """
    return max(1, cores - int(load + 0.5))


def set_cpu_threads(threads: int | None, reserve: int = 0) -> None:
    """Set torch's CPU threads: ``threads``, or :func:`auto_threads` less ``reserve`` unless OMP_NUM_THREADS is set.

    Parameters
    ----------
    threads : int or None
        A positive count (``--threads``); None picks the cores that the machine's other work leaves free.
    reserve : int, default 0
        Cores to leave free when picking (the app keeps one for serving pages while the ROI studio computes; at
        least one thread is used).
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads: expected a positive count, got {threads}.")
    if threads is None:
        if os.environ.get("OMP_NUM_THREADS") or not hasattr(os, "getloadavg"):
            return
        threads = max(1, auto_threads(os.cpu_count() or 1, os.getloadavg()[0]) - reserve)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:  # read by torch (and the BLAS) when the command imports them; keeps `--help` free of a torch import
        os.environ["OMP_NUM_THREADS"] = str(threads)
