"""The app's single state object: settings and the bundles found, shared by every tab."""

from __future__ import annotations

from braindiff_app.bundles import Bundle, find_bundles
from braindiff_app.config import Settings

__all__ = ["AppState"]


class AppState:
    """Settings and the bundles found in ``settings.bundle_dirs``.

    Parameters
    ----------
    settings : Settings
        Resolved configuration.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bundles: list[Bundle] = []
        self.problems: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        """Rescan the bundle folders (opening a bundle reads no image, so this is quick)."""
        self.bundles, self.problems = find_bundles(self.settings.bundle_dirs)
        self._by_name = {b.name: b for b in self.bundles}

    def bundle(self, name: str) -> Bundle:
        """The bundle called ``name``; ValueError naming the known ones otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self._by_name) or "none"
            raise ValueError(f"bundle: no bundle named {name!r} (found: {known}).") from None

    @property
    def default_bundle(self) -> str | None:
        """The bundle the app opens on: the demo's subject 1 when present, else the first found."""
        for b in self.bundles:
            if b.tier == self.settings.tier and b.subject == "1":
                return b.name
        return self.bundles[0].name if self.bundles else None
