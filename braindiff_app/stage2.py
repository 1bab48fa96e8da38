"""Stage-2 settings: the one home of the dual-guided diffusion stage's parameters and their defaults.

:class:`Stage2Settings` (strength, vision weight, guidance scale, DDIM steps) is what the pipeline's call, ``braindiff
reconstruct``, ``braindiff roi``, the app's ROI studio, ROI recipes and bundle manifests take their stage-2 values
from. The class defaults are the paper's (for the real model); :meth:`Stage2Settings.for_tier` gives a tier's
defaults (the demo tier's small model runs fewer DDIM steps). Nothing here imports torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from braindiff_app.config import TIERS, check_in_allowed

__all__ = ["STAGE2_FIELDS", "TIER_DIFFUSION_STEPS", "Stage2Settings"]

#: DDIM steps of the full diffusion schedule per tier: the paper's 50 for the real model; the small demo model
#: gives the same images in fewer (its reconstructions and ROI images use 20, 15 of them run from the VDVAE guess).
TIER_DIFFUSION_STEPS = {"demo": 20, "real": 50}


@dataclass(frozen=True)
class Stage2Settings:
    """Parameters of the dual-guided image-to-image stage, checked when made.

    Parameters
    ----------
    strength : float in [0, 1], default 0.75
        Fraction of the denoising schedule run from the noised VDVAE guess (37 of 50 steps).
    vision_weight : float in [0, 1], default 0.6
        Weight of the vision branch in each cross-attention layer (text gets the rest).
    guidance_scale : float >= 1, default 7.5
        Classifier-free guidance scale.
    num_inference_steps : int >= 1, default 50
        DDIM steps of the full schedule (the paper's 50; see :meth:`for_tier` for a tier's count).

    Raises
    ------
    TypeError, ValueError
        A field of the wrong kind or out of range (the message names the field; see :meth:`validate`).
    """

    strength: float = 0.75
    vision_weight: float = 0.6
    guidance_scale: float = 7.5
    num_inference_steps: int = 50

    def __post_init__(self) -> None:
        for name in ("strength", "vision_weight", "guidance_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name}: expected a number, got {value!r} ({type(value).__name__}).")
            object.__setattr__(self, name, float(value))
        steps = self.num_inference_steps
        if isinstance(steps, numbers.Real) and not isinstance(steps, bool) and float(steps).is_integer():
            object.__setattr__(self, "num_inference_steps", int(steps))
        else:
            raise TypeError(f"num_inference_steps: expected a whole number of DDIM steps, got {steps!r}.")
        self.validate()

    @classmethod
    def for_tier(cls, tier: str) -> Stage2Settings:
        """The defaults of a tier: the paper's values with the tier's DDIM steps (:data:`TIER_DIFFUSION_STEPS`).

        Parameters
        ----------
        tier : str in {"demo", "real"}
            - "demo": 20 steps (the committed small model);
            - "real": 50 steps (the paper's).
        """
        check_in_allowed(tier, TIERS, "tier")
        return cls(num_inference_steps=TIER_DIFFUSION_STEPS[tier])

    def validate(self) -> None:
        """Check every range (the pipeline's ``check_inputs`` relies on this).

        Raises
        ------
        ValueError
            Naming the field, the expected range and the value given.
        """
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength: expected a value in [0, 1], got {self.strength}.")
        if not 0.0 <= self.vision_weight <= 1.0:
            raise ValueError(f"vision_weight: expected a value in [0, 1] (0.6 in the paper), got "
                             f"{self.vision_weight}.")
        if not (self.guidance_scale >= 1.0 and math.isfinite(self.guidance_scale)):
            raise ValueError(f"guidance_scale: expected a value >= 1 (7.5 in the paper), got {self.guidance_scale}.")
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps: expected a positive count, got {self.num_inference_steps}.")

    def with_overrides(self, **values: Any) -> Stage2Settings:
        """A copy with the given fields replaced; None leaves a field as it is (unset command-line flags)."""
        return replace(self, **{name: value for name, value in values.items() if value is not None})

    @property
    def mixing(self) -> str:
        """The guidance mix in words, e.g. ``"0.6 vision / 0.4 text"`` (written in bundle manifests)."""
        return f"{self.vision_weight:g} vision / {1 - self.vision_weight:g} text"

    def to_json(self) -> dict[str, Any]:
        """The four fields as a JSON-ready dict, in field order (also the pipeline call's keyword arguments)."""
        return {name: getattr(self, name) for name in STAGE2_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "stage-2 settings",
                  defaults: Stage2Settings | None = None) -> Stage2Settings:
        """Read settings written by :meth:`to_json`; missing fields take ``defaults``.

        Parameters
        ----------
        data : mapping of str to number
            Some or all of the four fields, and nothing else.
        source : str, default "stage-2 settings"
            What the data came from (a file name), for error messages.
        defaults : Stage2Settings, optional
            Values of missing fields. Default: ``Stage2Settings()`` (the paper's, 50 steps).

        Raises
        ------
        ValueError
            Not a mapping, an unknown field, or a field of the wrong kind or out of range; the message names
            ``source`` and the field.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a mapping of stage-2 settings, got {type(data).__name__}.")
        unknown = [key for key in data if key not in STAGE2_FIELDS]
        if unknown:
            raise ValueError(f"{source}: unknown stage-2 setting(s) {unknown}; expected some of "
                             f"{list(STAGE2_FIELDS)}.")
        try:
            return replace(defaults if defaults is not None else cls(), **dict(data))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None


#: The field names, in order: the keys of :meth:`Stage2Settings.to_json`.
STAGE2_FIELDS = tuple(f.name for f in fields(Stage2Settings))
