"""Bundles: the precomputed results the app browses with no GPU.

A bundle is one folder per (subject, run)::

    <name>/
      manifest.json           format, version, subject, tier, settings, models, n_trials, image kinds
      trials.json             one record per trial: trial id (NSD image id), captions
      images/<kind>/<i>.png   i = 00000 ... n_trials-1; kinds: ground_truth, vdvae, final, no_vdvae, ...
      metrics.json            optional: {kind: {metric: [n_trials values]}}

A bundle is written into ``<name>.partial/`` and renamed to ``<name>/`` only when every trial is present, so a
killed run never looks complete; rerunning the writer resumes the partial folder (trial records carry the
manifest's fingerprint: one made under other settings is recomputed). One writer per bundle holds
``.<name>.lock``; a publish killed between its renames (``<name>.old`` left) is completed or rolled back at the
next scan or write. The reader is lazy (manifest and trial records only, never an image) and checks every field:
a damaged folder is reported by :func:`find_bundles` and skipped, never stops the scan.

The "only-VDVAE" ablation of the paper is the stage-1 guess itself, stored once as kind ``vdvae``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from braindiff_app._bundle_io import (
    FEATURE_SOURCES,
    OLD_SUFFIX,
    BundleError,
    BundleLockedError,
    WriterLock,
    check_captions,
    check_feature_source,
    check_int,
    check_metrics,
    inside,
    manifest_changes,
    manifest_fields,
    png_bytes,
    png_problem,
    read_json,
    read_png,
    recover_swap,
)
from braindiff_app.atomic import atomic_write_bytes, atomic_write_json, read_json_mark

__all__ = [
    # format
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "IMAGE_KINDS",
    "ABLATION_KINDS", "FEATURE_SOURCES",
    "KIND_LABELS",
    "BundleError",
    "BundleLockedError",
    "Manifest",
    "TrialRecord",
    "manifest_changes",
    # writing
    "BundleWriter",
    "write_metrics",
    # reading
    "Bundle",
    "open_bundle",
    "read_manifest",
    "find_bundles",
    "validate_bundle",
    "recover_bundle",
]

BUNDLE_FORMAT = "braindiff-bundle"
BUNDLE_VERSION = 1
REQUIRED_KINDS = ("ground_truth", "vdvae", "final")
ABLATION_KINDS = ("no_vdvae", "no_text", "no_vision")
#: Rows of metrics.json that are not images of the bundle: baselines a metric is read against (evaluation/baselines).
BASELINE_KINDS = ("baseline_flat", "baseline_mean", "baseline_lowpass")
IMAGE_KINDS = REQUIRED_KINDS + ABLATION_KINDS
KIND_LABELS = {
    "ground_truth": "Seen image",
    "vdvae": "VDVAE guess",
    "final": "Final reconstruction",
    "no_vdvae": "No VDVAE",
    "no_text": "No CLIP-text",
    "no_vision": "No CLIP-vision",
}
PARTIAL_SUFFIX = ".partial"
#: Largest number of trials a manifest may announce.
MAX_TRIALS = 10_000_000


# ---- Records ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest:
    """What a bundle holds and how it was made.

    Attributes
    ----------
    name : str
        Folder name of the bundle, e.g. ``"demo-subj01"``.
    subject : str
        ``"1"``, ``"2"``, ``"5"``, ``"7"`` (or any subject label) or ``"average"``.
    tier : str in {"demo", "real"}
    n_trials : int
        Number of test trials.
    kinds : tuple of str
        Image kinds stored for every trial; always includes ``ground_truth``, ``vdvae`` and ``final``.
    settings : dict
        Reconstruction settings: the stage-2 fields (:meth:`Stage2Settings.to_json
        <braindiff_app.stage2.Stage2Settings.to_json>`, read back by :attr:`stage2`), mixing, seed, rescale,
        alphas, ...
    models : dict
        Model identities: model file paths (relative to the repository for the committed demo models), content
        fingerprints of the models and of the subjects' regressors, library versions.
    image_size : int
        Side of the stored final images, in pixels.
    """

    name: str
    subject: str
    tier: str
    n_trials: int
    kinds: tuple[str, ...] = REQUIRED_KINDS
    settings: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    image_size: int = 512
    format: str = BUNDLE_FORMAT
    version: int = BUNDLE_VERSION

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in IMAGE_KINDS]
        if unknown:
            raise BundleError(f"kinds: unknown image kind(s) {unknown}; expected some of {list(IMAGE_KINDS)}.")
        missing = [k for k in REQUIRED_KINDS if k not in self.kinds]
        if missing:
            raise BundleError(f"kinds: a bundle needs {list(REQUIRED_KINDS)}; {missing} missing.")
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, (int, np.integer)) or self.n_trials < 1:
            raise BundleError(f"n_trials: expected a positive count, got {self.n_trials}.")
        check_feature_source(self.settings)

    @property
    def stage2(self):
        """The stage-2 settings the bundle was made with (:class:`~braindiff_app.stage2.Stage2Settings`; fields
        missing from ``settings`` take its defaults)."""
        from braindiff_app.stage2 import STAGE2_FIELDS, Stage2Settings

        return Stage2Settings.from_json({k: self.settings[k] for k in STAGE2_FIELDS if k in self.settings},
                                        f"bundle {self.name} manifest settings")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: Path) -> Manifest:
        if not isinstance(data, Mapping) or data.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{source}: not a braindiff bundle manifest (expected format {BUNDLE_FORMAT!r}).")
        if data.get("version") != BUNDLE_VERSION:
            raise BundleError(
                f"{source}: manifest version {data.get('version')!r}, this braindiff reads version "
                f"{BUNDLE_VERSION}; rewrite the bundle with this version (braindiff reconstruct)."
            )
        fields = manifest_fields(data, source, cls.__dataclass_fields__, REQUIRED_KINDS, MAX_TRIALS)
        try:
            return cls(**fields)
        except BundleError as exc:
            raise BundleError(f"{source}: {exc}") from None

    def fingerprint(self) -> str:
        """Content id of everything the manifest says (trial records made under another one are not reused)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrialRecord:
    """One test trial of a bundle.

    Attributes
    ----------
    index : int
        Position in the bundle, 0 ... n_trials-1.
    trial_id : int
        Stimulus identity (the NSD image id, 0-based, for NSD data).
    captions : tuple of str
        The image's captions (five for COCO images).
    """

    index: int
    trial_id: int
    captions: tuple[str, ...] = ()


def _image_name(index: int) -> str:
    return f"{index:05d}.png"


# ---- Writing ---------------------------------------------------------------------------------------------
class BundleWriter:
    """Write a bundle trial by trial, resumable, published only when complete.

    Parameters
    ----------
    root : path
        Folder that will hold the bundle (the bundle is ``root / manifest.name``).
    manifest : Manifest
        What the bundle will hold. Resuming requires the same manifest as the partial run.
    overwrite : bool, default False
        Replace an existing complete bundle of the same name (it is only removed at :meth:`finalize`), and start
        over a partial run made with other settings (without it, that partial run is refused, naming what changed).
    lock : bool, default True
        Hold the bundle's lock (a second writer is refused); False only in a run's helper processes.

    Examples
    --------
    >>> writer = BundleWriter(tmp, Manifest("demo-subj01", "1", "demo", n_trials=2, image_size=64))
    >>> for i in writer.pending():
    ...     writer.write_trial(i, trial_id=i, captions=["a cat"], images={...})
    >>> bundle = writer.finalize()
    """

    def __init__(self, root: str | os.PathLike, manifest: Manifest, overwrite: bool = False,
                 lock: bool = True) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.final_path = self.root / manifest.name
        self.partial_path = self.root / (manifest.name + PARTIAL_SUFFIX)
        self._fingerprint = manifest.fingerprint()
        # One writer per bundle: a second run (or a second `reconstruct` on the same bundle) is refused. Helper
        # processes of one run (accelerate) pass lock=False: their main process holds it.
        self._lock = WriterLock(self.root, manifest.name) if lock else None
        if lock:
            recover_swap(self.root, manifest.name, _is_complete, check_lock=False)
        if self.final_path.exists() and not overwrite:
            self.close()
            raise FileExistsError(f"{self.final_path}: a bundle of this name exists; pass overwrite=True "
                                  "(CLI: --overwrite) to replace it.")
        manifest_path = self.partial_path / "manifest.json"
        previous = read_json_mark(manifest_path)  # missing or damaged: (re)written; other settings' records unused
        if previous is not None and previous != manifest.to_json():
            if overwrite and lock:  # asked to replace: the other settings' trials are of no use
                shutil.rmtree(self.partial_path)
                previous = None
            else:  # (a helper process, lock=False, never removes what its main process made)
                self.close()
                changed = "; ".join(manifest_changes(previous, manifest.to_json())) or "another format"
                raise BundleError(f"{self.partial_path}: a partial run with other settings is here ({changed}); "
                                  "rerun with the same settings to resume it, or pass --overwrite to start over.")
        if previous is None and lock:
            atomic_write_json(manifest_path, manifest.to_json())

    def close(self) -> None:
        """Release the writer's lock (done by :meth:`finalize`, and when the process ends)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _record_path(self, index: int) -> Path:
        return self.partial_path / "trials" / f"{index:05d}.json"

    def _record(self, index: int) -> dict | None:
        """Trial ``index``'s record when it was written under this manifest's settings, else None."""
        try:
            record = read_json(self._record_path(index))
        except BundleError:
            return None
        if not isinstance(record, dict) or record.get("settings") != self._fingerprint:
            return None  # missing, damaged, or made under other settings (another run's): recompute it
        return record

    def has_trial(self, index: int) -> bool:
        """Whether trial ``index`` is fully written under this manifest (its record is written last)."""
        return self._record(index) is not None

    def pending(self) -> list[int]:
        """Indices of the trials still to write, in order."""
        return [i for i in range(self.manifest.n_trials) if not self.has_trial(i)]

    def write_trial(
        self,
        index: int,
        trial_id: int,
        captions: Sequence[str],
        images: Mapping[str, np.ndarray],
    ) -> None:
        """Write one trial's images, then its record (the record marks the trial as done).

        Parameters
        ----------
        index : int
            0 ... n_trials-1.
        trial_id : int
            Stimulus identity (NSD image id).
        captions : sequence of str
        images : mapping of str to array of shape (height, width, 3), uint8
            One image per kind of the manifest.
        """
        if not 0 <= index < self.manifest.n_trials:
            raise ValueError(f"index: expected 0 <= index < {self.manifest.n_trials}, got {index}.")
        missing = [k for k in self.manifest.kinds if k not in images]
        if missing:
            raise ValueError(f"images: trial {index} lacks kinds {missing} (manifest lists "
                             f"{list(self.manifest.kinds)}).")
        for kind in self.manifest.kinds:
            data = png_bytes(images[kind], f"images[{kind!r}] of trial {index}")
            atomic_write_bytes(self.partial_path / "images" / kind / _image_name(index), data)
        record = {"index": index, "trial_id": int(trial_id), "captions": [str(c) for c in captions],
                  "settings": self._fingerprint}
        atomic_write_json(self._record_path(index), record)

    def finalize(self) -> Bundle:
        """Gather trial records into ``trials.json``, check the bundle and publish it under its final name.

        Publishing over an existing bundle renames it to ``<name>.old`` first; a run killed between the renames
        is completed or rolled back by :func:`recover_bundle` (at the next writer or the next scan).

        Raises
        ------
        BundleError
            If some trials were never written.
        """
        pending = self.pending()
        if pending:
            raise BundleError(f"{self.partial_path}: {len(pending)} of {self.manifest.n_trials} trials not "
                              f"written yet (first: {pending[0]}); finish the run before finalizing.")
        records = [{k: v for k, v in self._record(i).items() if k != "settings"}
                   for i in range(self.manifest.n_trials)]
        atomic_write_json(self.partial_path / "manifest.json", self.manifest.to_json())
        atomic_write_json(self.partial_path / "trials.json", records)
        validate_bundle(self.partial_path, allow_partial=True)
        if self.final_path.exists():
            trash = self.root / (self.manifest.name + OLD_SUFFIX)
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(self.final_path, trash)
            os.replace(self.partial_path, self.final_path)
            shutil.rmtree(trash)
        else:
            os.replace(self.partial_path, self.final_path)
        shutil.rmtree(self.final_path / "trials", ignore_errors=True)  # after publishing: a kill never loses them
        self.close()
        return open_bundle(self.final_path)


def recover_bundle(root: str | os.PathLike, name: str) -> str | None:
    """Complete or roll back a publish of bundle ``name`` in ``root`` killed between its renames (``.old`` left);
    returns what was done, or None (nothing left behind, or a writer still at work)."""
    return recover_swap(Path(root), name, _is_complete)


def _is_complete(path: Path) -> bool:
    try:
        validate_bundle(path, allow_partial=True)
    except (BundleError, OSError):
        return False
    return True


def write_metrics(bundle_path: str | os.PathLike, metrics: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
    """Store per-trial metrics in a bundle (merged with those already there), atomically.

    Parameters
    ----------
    bundle_path : path
        A complete bundle folder.
    metrics : mapping of kind -> mapping of metric name -> sequence of n_trials floats
        E.g. ``{"final": {"PixCorr": [...], "SSIM": [...]}, "vdvae": {...}}``. NaN marks a value not computed.
    """
    bundle = open_bundle(bundle_path)
    rows: dict[str, dict[str, list[float | None]]] = {}
    for kind, table in metrics.items():
        if kind not in bundle.kinds + BASELINE_KINDS:
            raise ValueError(f"metrics: kind {kind!r} is not in bundle {bundle.name} (kinds {list(bundle.kinds)}) "
                             f"nor a baseline {BASELINE_KINDS}.")
        for name, values in table.items():
            values = np.asarray(values, dtype=float)
            if values.shape != (bundle.n_trials,):
                raise ValueError(f"metrics[{kind!r}][{name!r}]: expected shape ({bundle.n_trials},), "
                                 f"got {values.shape}.")
            rows.setdefault(kind, {})[name] = [None if np.isnan(v) else float(v) for v in values]
    path = bundle.path / "metrics.json"
    with WriterLock(bundle.path, "metrics", wait=True):  # concurrent evaluate runs: each merge sees the last one's
        merged = check_metrics(read_json(path), path, bundle.kinds + BASELINE_KINDS, bundle.n_trials) \
            if path.exists() else {}
        for kind, table in rows.items():
            merged.setdefault(kind, {}).update(table)
        atomic_write_json(path, merged)


# ---- Reading ---------------------------------------------------------------------------------------------
class Bundle:
    """A complete bundle on disk, read lazily.

    Use :func:`open_bundle` to open one. Opening reads ``manifest.json`` and ``trials.json`` only; images are
    read on request.
    """

    def __init__(self, path: Path, manifest: Manifest, trials: list[TrialRecord]) -> None:
        self.path = path
        self.manifest = manifest
        self.trials = trials
        self._metrics: dict[str, dict[str, np.ndarray]] | None = None
        #: Unique among the bundles found (:func:`find_bundles`): the name, or the name and its folder when names clash.
        self.key: str = manifest.name
        #: Where it lives, for people: "shipped", "yours" or the folder (:func:`find_bundles`'s ``labels``).
        self.origin: str = str(path.parent)

    def __repr__(self) -> str:
        return f"Bundle({self.name!r}, subject={self.subject!r}, tier={self.tier!r}, n_trials={self.n_trials})"

    name = property(lambda self: self.manifest.name)
    subject = property(lambda self: self.manifest.subject)
    tier = property(lambda self: self.manifest.tier)
    n_trials = property(lambda self: self.manifest.n_trials)
    kinds = property(lambda self: self.manifest.kinds)
    features = property(lambda self: check_feature_source(self.manifest.settings))  # one home for the default
    decoded = property(lambda self: self.features != "true")  # from a brain, not the seen images' own features

    def image_path(self, index: int, kind: str) -> Path:
        """Path of trial ``index``'s image of ``kind`` (not checked for existence); BundleError if it is a link
        that resolves outside the bundle folder (such a file is never served)."""
        if kind not in self.kinds:
            raise ValueError(f"kind: bundle {self.name} holds {list(self.kinds)}, got {kind!r}.")
        if not 0 <= index < self.n_trials:
            raise IndexError(f"index: bundle {self.name} has trials 0..{self.n_trials - 1}, got {index}.")
        path = self.path / "images" / kind / _image_name(index)
        if not inside(path, self.path):
            raise BundleError(f"{path}: links outside bundle {self.name} ({path.resolve()}); it is not served. "
                              "Copy the image into the bundle instead of linking it.")
        return path

    def image_problem(self, index: int, kind: str) -> str | None:
        """Why trial ``index``'s image of ``kind`` cannot be shown (missing, outside the bundle, not a readable
        PNG), or None when it can."""
        try:
            path = self.image_path(index, kind)
        except BundleError as exc:
            return str(exc)
        problem = png_problem(path)
        return None if problem is None else f"{problem} (bundle {self.name}, trial {index}, kind {kind!r})"

    def image(self, index: int, kind: str) -> np.ndarray:
        """Trial ``index``'s image of ``kind``: array of shape (height, width, 3), uint8 (BundleError naming the file
        when it is missing, damaged or too large)."""
        return read_png(self.image_path(index, kind), self.name)

    @property
    def metrics(self) -> dict[str, dict[str, np.ndarray]]:
        """Per-trial metrics ``{kind: {metric: array of shape (n_trials,)}}`` (empty when not evaluated);
        BundleError naming ``metrics.json`` and the field when the file is damaged or of the wrong shape."""
        if self._metrics is None:
            path = self.path / "metrics.json"
            raw = check_metrics(read_json(path), path, self.kinds + BASELINE_KINDS, self.n_trials) \
                if path.exists() else {}
            self._metrics = {
                kind: {name: np.array([np.nan if v is None else v for v in vals], dtype=float)
                       for name, vals in table.items()}
                for kind, table in raw.items()
            }
        return self._metrics

    def trial_metrics(self, index: int) -> dict[str, dict[str, float]]:
        """Metrics of one trial: ``{kind: {metric: value}}``."""
        return {kind: {name: float(vals[index]) for name, vals in table.items()}
                for kind, table in self.metrics.items()}

    def search(self, text: str) -> list[int]:
        """Indices of trials whose captions contain ``text`` (case-insensitive), or whose id equals it."""
        needle = text.strip().lower()
        if not needle:
            return list(range(self.n_trials))
        return [t.index for t in self.trials
                if needle == str(t.trial_id) or any(needle in c.lower() for c in t.captions)]


def _read_trials(path: Path, n_trials: int) -> list[TrialRecord]:
    raw = read_json(path)
    if not isinstance(raw, list):
        raise BundleError(f"{path}: expected a list of trial records, got {type(raw).__name__}.")
    if len(raw) != n_trials:
        raise BundleError(f"{path}: {len(raw)} trial records, but the manifest says n_trials={n_trials}.")
    trials = []
    for i, rec in enumerate(raw):
        if not isinstance(rec, Mapping) or "trial_id" not in rec:
            raise BundleError(f"{path}: record {i} lacks 'trial_id'.")
        trial_id = check_int(rec["trial_id"], str(path), f"record {i}: trial_id")
        captions = check_captions(rec.get("captions", []), str(path), f"record {i}: captions")
        trials.append(TrialRecord(index=i, trial_id=trial_id, captions=captions))
    return trials


def read_manifest(path: str | os.PathLike) -> Manifest:
    """A bundle's ``manifest.json``, every field checked: BundleError naming the file and the field otherwise."""
    return Manifest.from_json(read_json(Path(path)), Path(path))


def open_bundle(path: str | os.PathLike, allow_partial: bool = False) -> Bundle:
    """Open a complete bundle lazily (manifest and trial records only).

    Parameters
    ----------
    path : path
        The bundle folder.
    allow_partial : bool, default False
        Accept a ``*.partial`` folder (used while finalizing). A partial bundle is otherwise refused.

    Raises
    ------
    BundleError
        Not a bundle, another version, written halfway, or trial counts that disagree.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such bundle folder.")
    if path.name.endswith(PARTIAL_SUFFIX) and not allow_partial:
        raise BundleError(f"{path}: written halfway (the run was stopped); rerun it to resume and finish.")
    manifest = read_manifest(path / "manifest.json")
    if path.name not in (manifest.name, manifest.name + PARTIAL_SUFFIX):
        raise BundleError(f"{path / 'manifest.json'}: name {manifest.name!r} differs from the folder's name "
                          f"{path.name!r}; a bundle is known by its folder: rename one to match the other.")
    if not (path / "trials.json").exists():
        raise BundleError(f"{path}: trials.json missing: the bundle was written halfway; rerun to finish it.")
    trials = _read_trials(path / "trials.json", manifest.n_trials)
    return Bundle(path, manifest, trials)


def validate_bundle(path: str | os.PathLike, allow_partial: bool = False) -> Bundle:
    """Open a bundle and check every file: each trial's image of each kind and the metrics' lengths.

    Raises
    ------
    BundleError
        Naming the first missing image or mismatched metric.
    """
    bundle = open_bundle(path, allow_partial=allow_partial)
    for kind in bundle.kinds:
        folder = bundle.path / "images" / kind
        present = set(os.listdir(folder)) if folder.is_dir() else set()
        for i in range(bundle.n_trials):
            if _image_name(i) not in present:
                raise BundleError(f"{folder / _image_name(i)}: image missing (trial {i}, kind {kind!r}).")
            bundle.image_path(i, kind)  # refuses links that leave the bundle
    for kind, table in bundle.metrics.items():
        for name, values in table.items():
            if values.shape != (bundle.n_trials,):
                raise BundleError(f"{bundle.path / 'metrics.json'}: {kind}/{name} has {values.shape[0]} values, "
                                  f"expected {bundle.n_trials}.")
    return bundle


def find_bundles(dirs: Iterable[str | os.PathLike],
                 labels: Mapping[str | os.PathLike, str] | None = None) -> tuple[list[Bundle], list[str]]:
    """Open every complete bundle directly inside ``dirs``; a folder that cannot be opened is skipped and reported.

    ``<name>.partial`` and ``<name>.old`` folders are never listed; a killed publish is completed or rolled back.

    Parameters
    ----------
    dirs : iterable of path
        Folders to scan, in order.
    labels : mapping of path to str, optional
        Each bundle's ``origin`` by folder, e.g. ``{precomputed: "shipped"}`` (default: the folder's path).

    Returns
    -------
    bundles : list of Bundle
        Real subjects first by number, then ``average``, then by name. Each has a unique ``key``: its name, or
        ``"<name> (<origin>)"`` for every bundle of a shared name (its folder's path if that is taken too).
    problems : list of str
        One message per folder that looked like a bundle but could not be opened (partial ones included).
    """
    labels = {Path(k): v for k, v in (labels or {}).items()}
    bundles: list[Bundle] = []
    problems: list[str] = []
    for d in dict.fromkeys(Path(d) for d in dirs):  # a folder given twice is scanned once
        if not d.is_dir():
            continue
        try:
            for old in sorted(p for p in d.iterdir() if p.name.endswith(OLD_SUFFIX) and p.is_dir()):
                problems.append(recover_bundle(d, old.name[:-len(OLD_SUFFIX)]) or f"{old}: left by an "
                                "interrupted publish that is still under way; not listed.")
            children = sorted(d.iterdir())
        except OSError as exc:
            problems.append(f"{d}: cannot be listed or recovered ({exc.strerror or exc}).")
            continue
        for child in children:
            try:
                if child.name.endswith(OLD_SUFFIX) or not child.is_dir() or not (child / "manifest.json").exists():
                    continue
                bundle = open_bundle(child)
            except Exception as exc:  # noqa: BLE001 - one damaged folder never stops the others being served
                message = str(exc) if str(child) in str(exc) else f"{child}: {exc}"
                problems.append(message if isinstance(exc, (BundleError, OSError))
                                else f"{message} ({type(exc).__name__})")
                continue
            bundle.origin = labels.get(d, str(d))
            bundles.append(bundle)

    names = Counter(b.name for b in bundles)
    for b in bundles:  # a shared name: each bundle is labelled by where it lives (a bare name: ui/state.py)
        b.key = f"{b.name} ({b.origin})" if names[b.name] > 1 else b.name
    keys = Counter(b.key for b in bundles)
    for b in bundles:  # a label that is also a bundle's name, or a folder scanned twice: the path itself
        b.key = str(b.path) if keys[b.key] > 1 else b.key

    def key(b: Bundle) -> tuple:
        s = b.subject
        number = int(s) if s.isascii() and s.isdigit() else 0
        return (s == "average", number, b.tier != "demo", b.name, b.key)

    return sorted(bundles, key=key), problems
