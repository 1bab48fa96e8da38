"""The app's single state object: settings and the bundles found, shared by every tab."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from braindiff_app import config
from braindiff_app.bundles import Bundle, find_bundles
from braindiff_app.config import Settings

__all__ = ["AppState", "served_paths"]


class AppState:
    """Settings and the bundles found in ``settings.bundle_dirs``.

    Bundles are reached by key (:attr:`Bundle.key <braindiff_app.bundles.Bundle.key>`): the bundle's name, or
    ``"<name> (<origin>)"`` when several folders hold a bundle of that name (origin "shipped", "yours" or the
    folder). A bare name shared by several bundles (an old link, an API call) means the first one found in
    ``settings.bundle_dirs`` order: the shipped bundle before yours, as ``braindiff evaluate NAME`` reads it. A
    folder that cannot be opened is skipped and described in :attr:`problems`.

    Parameters
    ----------
    settings : Settings
        Resolved configuration.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bundles: list[Bundle] = []
        self.problems: list[str] = []
        #: Called with this state after every rescan (the launcher updates the files gradio may serve).
        self.listeners: list[Callable[[AppState], None]] = []
        #: The tabs' bundle pickers, all refreshed by "Rescan bundles" (:meth:`rescan`; ui/__init__.py wires the
        #: button): each (input components, output components, fn(*input values) -> one update per output).
        self.pickers: list[tuple[list, list, Callable[..., list]]] = []
        self._refresh_lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Rescan the bundle folders (opening a bundle reads no image, so this is quick). The new lists are built
        aside and swapped in at once: a handler running meanwhile sees the old ones or the new ones, never half."""
        labels = {config.PRECOMPUTED_DIR: "shipped", self.settings.home / "bundles": "yours"}
        bundles, problems = find_bundles(self.settings.bundle_dirs, labels)
        with self._refresh_lock:
            before = {b.key: b.path for b in self.bundles}
            by_path = {b.path: b.key for b in bundles}
            renamed = {key: by_path[path] for key, path in before.items() if path in by_path}
            by_key = {b.key: b for b in bundles}
            order = {Path(d): i for i, d in enumerate(self.settings.bundle_dirs)}
            scan_order = sorted(bundles, key=lambda b: order.get(b.path.parent, len(order)))
            for b in scan_order:
                by_key.setdefault(b.name, b)  # a shared bare name: the first folder's bundle
            self._by_key, self._renamed, self._scan_order = by_key, renamed, scan_order
            self.bundles, self.problems = bundles, problems
        for listener in self.listeners:
            listener(self)

    def rescan(self, *values) -> list:
        """Rescan the bundle folders, then every picker's updates (``values``: the pickers' inputs, in order)."""
        self.refresh()
        updates: list = []
        for inputs, outputs, fn in self.pickers:
            got = list(fn(*values[:len(inputs)]))
            values = values[len(inputs):]
            if len(got) != len(outputs):
                raise RuntimeError(f"picker {fn.__name__}: {len(got)} updates for {len(outputs)} outputs.")
            updates += got
        return updates

    def key_of(self, key: str | None) -> str | None:
        """The current key of the bundle ``key`` named before the last rescan (the same folder, though its key may now
        carry a label), else of the bundle ``key`` names now; None when no bundle answers to it."""
        if key in self._renamed:
            return self._renamed[key]
        try:
            return self.bundle(key).key if key else None
        except ValueError:
            return None

    def bundle(self, key: str) -> Bundle:
        """The bundle of key ``key``, or of bare name ``key`` (see the class notes); ValueError naming the known
        keys otherwise."""
        try:
            return self._by_key[key]
        except (KeyError, TypeError):
            known = ", ".join(b.key for b in self.bundles) or "none"
            raise ValueError(f"bundle: no bundle named {key!r} (found: {known}).") from None

    def label(self, bundle: Bundle) -> str:
        """Dropdown label of ``bundle``: subject, tier and name, and where it lives when its name is shared."""
        from braindiff_app.ui import text

        label = text.subject_label(bundle.subject, bundle.tier, bundle.name, bundle.features)
        shared = sum(b.name == bundle.name for b in self.bundles) > 1
        return f"{label} ({bundle.origin})" if shared else label

    def choices(self, decoded_only: bool = False) -> list[tuple[str, str]]:
        """Dropdown choices (label, key) of every bundle found; ``decoded_only``: only bundles decoded from brain
        activity (not those made from the seen images' true features)."""
        return [(self.label(b), b.key) for b in self.bundles if b.decoded or not decoded_only]

    @property
    def default_bundle(self) -> str | None:
        """Key of the bundle the app opens on: the tier's subject 1 when present (of several, the first folder's, as
        for a bare name; not one made from true features), else the first listed decoded from a brain, else the
        first listed."""
        for b in self._scan_order:
            if b.tier == self.settings.tier and b.subject == "1" and b.decoded:
                return b.key
        decoded = [b for b in self.bundles if b.decoded]
        return (decoded or self.bundles)[0].key if self.bundles else None


def served_paths(state: AppState) -> tuple[list[str], list[str]]:
    """What gradio may serve: the image folders of the bundles found, and, blocked inside them, every file that is
    not a PNG image.

    Returns
    -------
    allowed : list of str
        Each bundle's ``images/`` folder, resolved (a bundle folder may be a link).
    blocked : list of str
        Any non-PNG file under those folders. The bundles' own files (manifest, trials, metrics) lie outside
        them, and links leaving a bundle resolve outside them too, so gradio refuses both.
    """
    allowed, blocked = [], []
    for b in state.bundles:
        images = b.path.resolve() / "images"
        allowed.append(str(images))
        if images.is_dir():
            blocked += [str(Path(dirpath) / f) for dirpath, _, files in os.walk(images) for f in files
                        if not f.lower().endswith(".png")]
    return allowed, blocked
