"""Bundle file checks: reading untrusted JSON field by field, the writer's lock, and recovering a killed swap.

Private helpers of :mod:`braindiff_app.bundles`. Every function here raises :class:`BundleError` (a ValueError)
naming the file and the field, never another exception, whatever bytes a bundle folder holds.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BundleError", "BundleLockedError", "read_json", "read_png", "check_str", "check_int", "check_captions",
           "check_metrics", "manifest_changes", "manifest_fields", "png_bytes", "png_problem", "inside", "WriterLock",
           "recover_swap", "OLD_SUFFIX", "LOCK_SUFFIX"]

#: Largest JSON file a bundle may hold (a 10 000-trial trials.json with five captions each is ~3 MB).
MAX_JSON_BYTES = 256 << 20
#: Largest id or count accepted (int64).
MAX_INT = 2**63 - 1
OLD_SUFFIX = ".old"
LOCK_SUFFIX = ".lock"


class BundleError(ValueError):
    """A bundle on disk is missing a file, malformed, incomplete or of another version."""


class BundleLockedError(BundleError):
    """Another writer holds the bundle's lock."""


def read_json(path: Path, missing: str = "the bundle is incomplete or not a bundle") -> Any:
    """Parse a bundle's (or a workspace's) JSON file; BundleError naming the file for anything that is not UTF-8
    JSON, ``missing`` saying what a missing file means."""
    if not path.exists():
        raise BundleError(f"{path}: missing; {missing}.")
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise BundleError(f"{path}: {path.stat().st_size} bytes, more than a bundle file may hold "
                              f"({MAX_JSON_BYTES}); the file is damaged.")
        text = path.read_bytes().decode("utf-8")
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); the file is damaged.") from None
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: not UTF-8 text (byte {exc.start}); rewrite the file as UTF-8 JSON.") from None
    except RecursionError:
        raise BundleError(f"{path}: JSON nested too deeply; the file is damaged.") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    except ValueError as exc:  # NaN/Infinity constants, integers with too many digits
        raise BundleError(f"{path}: not valid JSON ({exc}); the file is damaged.") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: they break the app's response stream
        return False
    return True


def check_str(value: Any, source: str, field: str, max_len: int = 256) -> str:
    """A non-empty string of valid text (no lone surrogates, no control characters), at most ``max_len`` long."""
    if not isinstance(value, str) or not value:
        raise BundleError(f"{source}: {field}: expected a non-empty string, got {_show(value)}.")
    if len(value) > max_len or not _is_text(value) or any(c < " " for c in value):
        raise BundleError(f"{source}: {field}: expected printable text of at most {max_len} characters, got "
                          f"{_show(value)}.")
    return value


def check_int(value: Any, source: str, field: str, minimum: int = 0) -> int:
    """An integer (JSON number without fraction, not a bool) in [minimum, 2**63 - 1]."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INT:
        raise BundleError(f"{source}: {field}: expected an integer >= {minimum}, got {_show(value)}.")
    return value


#: ``settings["features"]`` (absent: "predicted" by regressors from fMRI; "true": the seen images' own, the ceiling).
FEATURE_SOURCES = ("predicted", "true")


def check_feature_source(settings: Any) -> str:
    """A manifest's ``settings["features"]`` (absent: "predicted"), one of :data:`FEATURE_SOURCES`."""
    features = settings.get("features", "predicted") if isinstance(settings, Mapping) else "predicted"
    if features not in FEATURE_SOURCES:
        raise BundleError(f"settings.features: expected one of {list(FEATURE_SOURCES)}, got {_show(features)}.")
    return features


def check_captions(value: Any, source: str, field: str) -> tuple[str, ...]:
    """A list of caption strings (valid text, at most 2000 characters each)."""
    if not isinstance(value, list):
        raise BundleError(f"{source}: {field}: expected a list of strings, got {_show(value)}.")
    for j, caption in enumerate(value):
        if not isinstance(caption, str) or len(caption) > 2000 or not _is_text(caption):
            raise BundleError(f"{source}: {field}[{j}]: expected text of at most 2000 characters, got "
                              f"{_show(caption)}.")
    return tuple(value)


def check_metrics(raw: Any, source: Path, kinds: tuple[str, ...], n_trials: int) -> dict[str, dict[str, list]]:
    """``{kind: {metric: [n_trials numbers or null]}}``, checked field by field."""
    if not isinstance(raw, dict):
        raise BundleError(f"{source}: expected an object {{kind: {{metric: [values]}}}}, got {_show(raw)}.")
    for kind, table in raw.items():
        if kind not in kinds:
            raise BundleError(f"{source}: {kind!r}: not an image kind of this bundle ({list(kinds)}).")
        if not isinstance(table, dict):
            raise BundleError(f"{source}: {kind}: expected an object {{metric: [values]}}, got {_show(table)}.")
        for name, values in table.items():
            check_str(name, str(source), f"{kind} metric name", max_len=64)
            if not isinstance(values, list) or len(values) != n_trials:
                got = f"{len(values)} values" if isinstance(values, list) else _show(values)
                raise BundleError(f"{source}: {kind}/{name}: expected a list of {n_trials} values (one per "
                                  f"trial), got {got}.")
            bad = [i for i, v in enumerate(values) if v is not None and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v))]
            if bad:
                raise BundleError(f"{source}: {kind}/{name}[{bad[0]}]: expected a number or null, got "
                                  f"{_show(values[bad[0]])}.")
    return raw


def _show(value: Any) -> str:
    text = ascii(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


# --------------------------------------------------------------------------------------------------------
# Writer lock
# --------------------------------------------------------------------------------------------------------
class WriterLock:
    """An exclusive advisory lock on ``<root>/.<name>.lock`` (``fcntl.flock``; released when the process dies).

    By default re-entrant within one process (writers of one run share it) and another process is refused. With
    ``wait=True`` it waits for the lock instead, and threads of one process wait for each other too (each holder
    opens the file itself): for short read-modify-writes such as ``metrics.json``'s.

    Raises
    ------
    BundleLockedError
        If another process holds it (``wait=False``).
    """

    _held: dict[tuple[int, str], list] = {}  # (pid, lock path) -> [fd, count]

    def __init__(self, root: Path, name: str, wait: bool = False) -> None:
        self.path = root / f".{name}{LOCK_SUFFIX}"
        self._fd: int | None = None  # wait=True: this holder's own descriptor
        self._key: tuple[int, str] | None = None if wait else (os.getpid(), str(self.path.absolute()))
        entry = self._held.get(self._key) if self._key else None
        if entry is not None:
            entry[1] += 1
            return
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows: no advisory locks; one writer per bundle is then the user's rule
            pass
        except OSError:
            os.close(fd)
            self._key = None
            raise BundleLockedError(f"{root / name}: another run is writing this bundle (it holds the lock "
                                    f"{self.path}); wait for it to finish, or stop it and rerun.") from None
        if wait:
            self._fd = fd
        else:
            self._held[self._key] = [fd, 1]

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    @classmethod
    def is_held(cls, root: Path, name: str) -> bool:
        """Whether some writer (another process, or this one) holds the lock of bundle ``name`` in ``root``."""
        path = root / f".{name}{LOCK_SUFFIX}"
        if not path.exists():
            return False
        if (os.getpid(), str(path.absolute())) in cls._held:
            return True
        try:
            lock = WriterLock(root, name)
        except BundleLockedError:
            return True
        except OSError:  # read-only folder: nobody writes there
            return False
        lock.release()
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        entry = self._held.get(self._key) if self._key else None
        self._key = None
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del self._held[(os.getpid(), str(self.path.absolute()))]
                os.close(entry[0])  # closing the descriptor releases the flock

    def __del__(self) -> None:
        self.release()


def recover_swap(root: Path, name: str, is_complete, check_lock: bool = True) -> str | None:
    """Finish or roll back a publish that was killed between its renames (``<name>.old`` left behind).

    ``is_complete(path)`` says whether ``<name>.partial`` is a finished bundle. Returns what was done, or None
    when there was nothing to do (or a writer holds the lock, so the swap is still under way).
    """
    old, final, partial = root / (name + OLD_SUFFIX), root / name, root / (name + ".partial")
    if not old.is_dir() or (check_lock and WriterLock.is_held(root, name)):
        return None
    if final.exists():
        shutil.rmtree(old)  # the swap was done; only removing the previous bundle was cut short
        return f"{old}: removed (left by an interrupted publish of {final})"
    if partial.is_dir() and is_complete(partial):
        os.replace(partial, final)
        shutil.rmtree(old)
        return f"{final}: publish completed (it was interrupted; the previous bundle was removed)"
    os.replace(old, final)
    return f"{final}: restored (an interrupted publish had moved it to {old})"


def manifest_changes(previous: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """What differs between two manifests' JSON (``Manifest.to_json``), keys added or removed included:
    ``["n_trials: 3 -> 4", "settings.strength: 0.75 -> 0.6"]``."""
    changed = []
    for key in sorted(set(previous) | set(wanted)):
        old, new = previous.get(key), wanted.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            changed += [f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                        if old.get(k) != new.get(k)]
        elif old != new:
            changed.append(f"{key}: {old!r} -> {new!r}")
    return changed


def manifest_fields(data: Mapping, source: Path, names, default_kinds: tuple[str, ...], max_trials: int) -> dict:
    """The manifest's fields, each checked for type and range (BundleError naming the file and the field)."""
    fields = {k: data[k] for k in names if k in data}
    missing = [k for k in ("name", "subject", "tier", "n_trials") if k not in fields]
    if missing:
        raise BundleError(f"{source}: manifest lacks {missing}.")
    src = str(source)
    fields["name"] = check_str(fields["name"], src, "name", max_len=200)
    if fields["name"] in (".", "..") or any(c in fields["name"] for c in "/\\"):
        raise BundleError(f"{source}: name: expected a folder name, got {fields['name']!r}.")
    subject = fields["subject"]
    if isinstance(subject, int) and not isinstance(subject, bool):
        subject = str(subject)
    fields["subject"] = check_str(subject, src, "subject", max_len=64)
    fields["tier"] = check_str(fields["tier"], src, "tier", max_len=64)
    fields["n_trials"] = check_int(fields["n_trials"], src, "n_trials", minimum=1)
    if fields["n_trials"] > max_trials:
        raise BundleError(f"{source}: n_trials: expected at most {max_trials}, got {fields['n_trials']}.")
    kinds = fields.get("kinds", list(default_kinds))
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise BundleError(f"{source}: kinds: expected a list of image kinds, got {_show(kinds)}.")
    fields["kinds"] = tuple(kinds)
    for key in ("settings", "models"):
        if key in fields:
            fields[key] = as_mapping(fields[key], src, key)
    if "image_size" in fields:
        fields["image_size"] = check_int(fields["image_size"], src, "image_size", minimum=1)
    return fields


#: Largest image a bundle may hold, in pixels (the real tier's are 512x512; larger is a damaged or hostile file).
MAX_IMAGE_PIXELS = 4096 * 4096


def read_png(path: Path, bundle: str) -> np.ndarray:
    """A bundle image as an array of shape (height, width, 3), uint8; BundleError naming the file when it is
    missing, too large (read from the header, before decoding) or damaged."""
    from PIL import Image

    if not path.is_file():
        raise BundleError(f"{path}: image missing from bundle {bundle}.")
    try:
        with warnings.catch_warnings():  # PIL's own bomb warning: the size is checked here, with the file named
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                raise BundleError(f"{path}: image of {width}x{height} pixels in bundle {bundle}; bundle images hold "
                                  f"at most {MAX_IMAGE_PIXELS} pixels.")
            return np.asarray(im.convert("RGB"))
    except BundleError:
        raise
    except Image.DecompressionBombError as exc:  # PIL's own limit, when the app has lowered it
        raise BundleError(f"{path}: image too large in bundle {bundle} ({exc}).") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as exc:  # PIL's decoder errors
        raise BundleError(f"{path}: unreadable image in bundle {bundle} ({type(exc).__name__}: {exc}).") from None


def png_bytes(image: np.ndarray, source: str) -> bytes:
    """``image`` (uint8, shape (height, width, 3)) encoded as PNG; ValueError naming ``source`` for another array."""
    import io

    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{source}: expected a uint8 image of shape (height, width, 3), got "
                         f"{image.dtype} array of shape {image.shape}.")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=4)
    return buffer.getvalue()


def png_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable PNG file, or None."""
    if not path.is_file():
        return f"{path}: image missing"
    try:
        from PIL import Image

        with Image.open(path) as im:
            if im.format != "PNG":
                return f"{path}: not a PNG image ({im.format})"
            im.verify()
    except Exception as exc:  # noqa: BLE001 - any decoder error means the same thing here
        return f"{path}: unreadable image ({type(exc).__name__})"
    return None


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` resolves inside ``folder`` (itself resolved: a bundle folder may be a link)."""
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):  # outside, or a link loop
        return False
    return True


def as_mapping(value: Any, source: str, field: str) -> dict:
    if not isinstance(value, Mapping):
        raise BundleError(f"{source}: {field}: expected an object, got {_show(value)}.")
    return dict(value)
