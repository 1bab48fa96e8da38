"""ROI recipes: everything that makes an ROI-optimal image (regions, weights, painted voxels, subject, seed, settings),
checked field by field and saved as JSON that re-creates the image. :mod:`braindiff_app.roi` re-exports these names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from braindiff_app.atomic import atomic_write_json
from braindiff_app.config import TIERS, check_in_allowed
from braindiff_app.data.atlas import canonical_region
from braindiff_app.protocol import DEFAULT_PROTOCOL, PROTOCOLS
from braindiff_app.stage2 import STAGE2_FIELDS, Stage2Settings

__all__ = ["RECIPE_FORMAT", "RECIPE_VERSION", "MAX_RECIPE_BYTES", "MAX_WEIGHT", "MAX_SEED", "PATTERN_RESCALES",
           "MAX_CANDIDATES", "MAX_LINK_CHARS", "Recipe", "check_candidates", "format_regions"]

#: How predictions of synthetic patterns are re-scaled (see :func:`braindiff_app.roi.predict_pattern_features`).
PATTERN_RESCALES = ("effect", "norm")
RECIPE_FORMAT = "braindiff-roi-recipe"
RECIPE_VERSION = 1
#: Largest recipe file read (a recipe painting every voxel of an NSD subject is about 0.3 MB).
MAX_RECIPE_BYTES = 4 * 2**20
#: Largest magnitude of a region or paint weight: the pattern lives in z-scored voxel units, where a few units are
#: already far outside the training data; beyond this, float32 patterns and predictions lose meaning (1e308
#: overflows to inf and gives a black image).
MAX_WEIGHT = 100.0
#: Longest recipe token read from a link (about 30 KB of compressed recipe; browsers keep URLs of 64 KB and more).
MAX_LINK_CHARS = 40_000
#: Seeds are int64 in the pipeline (and numpy's generators): larger values would wrap to another image's seed.
MAX_SEED = 2**63 - 1
#: Most best-of-N candidates a recipe may ask for (``settings["candidates"]``, see :mod:`braindiff_app.encoding`).
MAX_CANDIDATES = 16


def check_candidates(n: Any, limit: int = MAX_CANDIDATES, name: str = "candidates") -> int:
    """``n`` as a number of best-of-N candidates: an integer from 1 to ``limit``.

    Raises
    ------
    ValueError
        Anything else (a bool, a float, a number out of range), naming ``name``, the range and the value.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= limit:
        raise ValueError(f"{name}: expected an integer from 1 to {limit}, got {n!r}.")
    return int(n)


def _check_weight(value: Any, name: str) -> float:
    """``value`` as a float within +-:data:`MAX_WEIGHT`; ValueError/TypeError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number like 1 or -0.5, got {value!r} ({type(value).__name__}).")
    try:
        weight = float(value)
    except OverflowError:  # an int beyond float's range
        weight = math.inf
    if not (math.isfinite(weight) and abs(weight) <= MAX_WEIGHT):
        raise ValueError(f"{name}: expected a finite weight in [-{MAX_WEIGHT:g}, +{MAX_WEIGHT:g}], got {value!r}.")
    return weight


def format_regions(weights: Mapping[str, float]) -> str:
    """The inverse of :func:`parse_regions`: ``{"V1": 1, "V2": -1}`` -> ``"V1:+1,V2:-1"``."""
    return ",".join(f"{name}:{weight:+g}" for name, weight in weights.items())


# --------------------------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """Everything that makes an ROI-optimal image, saved as JSON to re-create it.

    Attributes
    ----------
    subject : str
        ``"1"``, ``"2"``, ... or ``"average"``.
    regions : dict of str to float
        Region name -> weight.
    painted : tuple of int
        Painted voxel indices (single subjects only).
    painted_weight : float
        Value of painted voxels.
    seed : int
        The image's seed (stage 1 prior layers and stage 2 noise).
    settings : dict
        Stage-2 parameters (the fields of :class:`~braindiff_app.stage2.Stage2Settings`: strength, vision_weight,
        guidance_scale, num_inference_steps), ``rescale`` (see :func:`predict_pattern_features`) and optionally
        the ``tier``. Given partly, it is completed when the recipe is made: missing stage-2 fields take
        ``Stage2Settings()``'s values (the paper's, 50 steps: what recipes without them always ran with), a
        missing rescale "effect". An unknown key or a bad value is a ValueError naming it.

    ranking : tuple of (int, float)
        Best-of-N result (``settings["candidates"]`` = N, :meth:`braindiff_app.encoding.EncodingModels.best_of_n`):
        (seed, encoder score) of each candidate, best first; empty for a single image. A result, not an input:
        it is left out of :attr:`content_id`.

    A recipe's :attr:`content_id` names its whole content (two recipes with the same id make the same image).
    """

    subject: str
    regions: dict[str, float] = field(default_factory=dict)
    painted: tuple[int, ...] = ()
    painted_weight: float = 1.0
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    ranking: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        subject = self.subject
        if isinstance(subject, bool) or not isinstance(subject, (str, int, np.integer)):
            raise TypeError(f"subject: expected a subject number like \"1\" or \"average\", got {subject!r} "
                            f"({type(subject).__name__}).")
        subject = str(subject).strip()
        if not subject or len(subject) > 32:
            raise ValueError(f"subject: expected a subject number like \"1\" or \"average\", got {subject[:40]!r}.")
        object.__setattr__(self, "subject", subject)
        if not isinstance(self.regions, Mapping):
            raise TypeError(f"regions: expected a mapping of region name to weight like {{\"V1\": 1.0}}, got "
                            f"{type(self.regions).__name__}.")
        regions = {}
        for key, value in self.regions.items():
            if not isinstance(key, str):
                raise TypeError(f"regions: expected region names (strings), got {key!r}.")
            try:
                name = canonical_region(key)
            except ValueError as exc:
                raise ValueError(f"regions: {str(exc).removeprefix('region: ')}") from None
            regions[name] = _check_weight(value, f"regions[{key!r}]")
        object.__setattr__(self, "regions", regions)
        painted = self.painted
        if isinstance(painted, (str, bytes, Mapping)) or not isinstance(painted, (Sequence, np.ndarray)):
            raise TypeError(f"painted: expected a list of voxel indices, got {type(painted).__name__}.")
        for i in painted:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) <= MAX_SEED:
                raise ValueError(f"painted: expected non-negative integer voxel indices, got {i!r}.")
        object.__setattr__(self, "painted", tuple(int(i) for i in painted))
        object.__setattr__(self, "painted_weight", _check_weight(self.painted_weight, "painted_weight"))
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, (int, float, np.integer, np.floating)):
            raise TypeError(f"seed: expected a non-negative integer, got {seed!r} ({type(seed).__name__}).")
        if not (math.isfinite(seed) and float(seed).is_integer() and 0 <= int(seed) <= MAX_SEED):
            raise ValueError(f"seed: expected an integer in [0, 2**63 - 1], got {seed!r}.")
        object.__setattr__(self, "seed", int(seed))
        object.__setattr__(self, "settings", _recipe_settings(self.settings))
        object.__setattr__(self, "ranking", _check_ranking(self.ranking))
        if self.painted and self.subject == "average":
            raise ValueError("painted: painted voxels belong to one subject's voxels; use regions for the subject "
                             "average, or choose a subject.")

    @property
    def label(self) -> str:
        """Short description, e.g. ``"subj 1: V1:+1,faces:+1 (+12 painted)"``."""
        parts = [format_regions(self.regions)] if self.regions else []
        if self.painted:
            parts.append(f"{len(self.painted)} painted voxels")
        return f"subject {self.subject}: " + ", ".join(parts) + f", seed {self.seed}"

    @property
    def stage2(self) -> Stage2Settings:
        """The stage-2 parameters of :attr:`settings`."""
        return Stage2Settings.from_json({k: self.settings[k] for k in STAGE2_FIELDS}, "recipe settings")

    @property
    def content_id(self) -> str:
        """A stable identity of the recipe's whole content: 16 hex digits of the SHA-256 of its canonical JSON.

        Subject, region weights, painted voxels (as a set) and their weight, seed, every stage-2 setting, the
        rescale and the tier all enter; region order does not (the pattern sums them). The same in every process
        and Python version (unlike ``hash``): app file names use it.
        """
        content = {**self.to_json(), "painted": sorted(set(self.painted))}
        if content["settings"]["protocol"] == DEFAULT_PROTOCOL:  # ids made before protocols were recorded stay
            content["settings"] = {k: v for k, v in content["settings"].items() if k != "protocol"}
        content.pop("ranking", None)
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """The recipe as the JSON file holds it: every field, every setting (stage 2, rescale, protocol, tier)."""
        data = {"format": RECIPE_FORMAT, "version": RECIPE_VERSION, **asdict(self), "painted": list(self.painted)}
        data["ranking"] = [list(item) for item in self.ranking]
        if not self.ranking:  # recipes without a ranking read as they always did
            data.pop("ranking")
        return data

    def to_link(self) -> str:
        """The recipe as a URL-safe token (base64url of its zlib-compressed compact JSON, no padding), for the
        studio's ``?tab=roi&recipe=TOKEN`` links; :meth:`from_link` reads it back."""
        data = json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        return base64.urlsafe_b64encode(zlib.compress(data.encode("ascii"), 9)).decode("ascii").rstrip("=")

    @classmethod
    def from_link(cls, token: str) -> Recipe:
        """Read a :meth:`to_link` token; ValueError naming what is wrong (too long, not base64, not a recipe), and
        at most :data:`MAX_RECIPE_BYTES` of JSON are inflated (a small token cannot expand without bound)."""
        if not isinstance(token, str) or not token:
            raise ValueError("recipe link: empty; expected the token after ?recipe= that the studio's Copy link wrote.")
        if len(token) > MAX_LINK_CHARS:
            raise ValueError(f"recipe link: {len(token)} characters, more than {MAX_LINK_CHARS}.")
        try:
            packed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            inflate = zlib.decompressobj()
            data = inflate.decompress(packed, MAX_RECIPE_BYTES)
            if inflate.unconsumed_tail:
                raise ValueError(f"recipe link: inflates to more than {MAX_RECIPE_BYTES} bytes.")
            content = json.loads(data.decode("utf-8"))
        except (binascii.Error, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"recipe link: not a recipe that the studio's Copy link wrote (cut short or changed? "
                             f"{type(exc).__name__}: {exc})") from None
        except RecursionError:
            raise ValueError("recipe link: JSON nested too deeply; a recipe holds flat values.") from None
        return cls.from_json(content, "recipe link")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "recipe") -> Recipe:
        if not isinstance(data, Mapping) or data.get("format") != RECIPE_FORMAT:
            raise ValueError(f"{source}: not a braindiff ROI recipe (expected format {RECIPE_FORMAT!r}).")
        if data.get("version") != RECIPE_VERSION:
            raise ValueError(f"{source}: recipe version {data.get('version')!r}, this braindiff reads "
                             f"{RECIPE_VERSION}.")
        if "subject" not in data:
            raise ValueError(f"{source}: subject: missing; expected a subject number like \"1\" or \"average\".")
        fields = ("subject", "regions", "painted", "painted_weight", "seed", "settings", "ranking")
        try:
            return cls(**{k: data[k] for k in fields if k in data})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None
        except RecursionError:
            raise ValueError(f"{source}: nested too deeply; a recipe holds flat values.") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the recipe as JSON (atomically); returns the path."""
        atomic_write_json(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recipe:
        """Read a recipe written by :meth:`save` (at most :data:`MAX_RECIPE_BYTES`; ValueError for anything that
        is not a recipe, naming the file)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such recipe file.")
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:
            raise ValueError(f"{path}: {size} bytes, more than a recipe's {MAX_RECIPE_BYTES} at most; choose the "
                             "recipe JSON the app or `braindiff roi` wrote.")
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}).") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a text file; choose a recipe JSON.") from None
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply; a recipe holds flat values.") from None
        return cls.from_json(data, str(path))


def _recipe_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """A recipe's settings completed and checked: the stage-2 fields (missing ones from ``Stage2Settings()``),
    ``rescale`` (default "effect") and the ``tier`` when given."""
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise TypeError(f"settings: expected a mapping of stage-2 settings, rescale and tier, got "
                        f"{type(settings).__name__}.")
    settings = dict(settings)
    rescale = settings.pop("rescale", "effect")
    check_in_allowed(rescale, PATTERN_RESCALES, "settings.rescale")
    tier = settings.pop("tier", None)
    if tier is not None:
        check_in_allowed(tier, TIERS, "settings.tier")
    protocol = settings.pop("protocol", DEFAULT_PROTOCOL)
    check_in_allowed(protocol, PROTOCOLS, "settings.protocol")
    candidates = check_candidates(settings.pop("candidates", 1), name="settings.candidates")
    unknown = [key for key in settings if key not in STAGE2_FIELDS]
    if unknown:
        raise ValueError(f"settings: unknown key(s) {unknown}; expected some of "
                         f"{[*STAGE2_FIELDS, 'rescale', 'tier', 'protocol', 'candidates']}.")
    stage2 = Stage2Settings.from_json(settings, "settings")
    # Every setting is written out (the protocol too); content_id leaves out the default protocol, so recipes made
    # before protocols were recorded keep their ids.
    return {**stage2.to_json(), "rescale": rescale, "protocol": protocol,
            **({"tier": tier} if tier is not None else {}),
            **({"candidates": int(candidates)} if int(candidates) != 1 else {})}


def _check_ranking(ranking: Any) -> tuple[tuple[int, float], ...]:
    """A best-of-N ranking as ((seed, score), ...); ValueError naming the entry otherwise."""
    if isinstance(ranking, (str, bytes, Mapping)) or not isinstance(ranking, (Sequence, np.ndarray)):
        raise TypeError(f"ranking: expected a list of [seed, score] pairs, got {type(ranking).__name__}.")
    if len(ranking) > MAX_CANDIDATES:
        raise ValueError(f"ranking: at most {MAX_CANDIDATES} candidates, got {len(ranking)}.")
    out = []
    for i, item in enumerate(ranking):
        ok = isinstance(item, (Sequence, np.ndarray)) and not isinstance(item, (str, bytes)) and len(item) == 2
        seed, score = item if ok else (None, None)
        if not ok or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED \
                or isinstance(score, bool) or not isinstance(score, (int, float, np.number)) \
                or not math.isfinite(score):
            raise ValueError(f"ranking[{i}]: expected [seed, score] (a non-negative integer and a finite number), "
                             f"got {item!r}.")
        out.append((int(seed), float(score)))
    return tuple(out)


