"""Protocols: the named sets of procedural choices where braindiff departs from the paper's reference code.

:data:`PROTOCOLS` holds two:

- ``"reference"`` reproduces the reference scripts (github.com/ozcelikfu/brain-diffuser) item by item;
- ``"braindiff"`` (the default) keeps the project's choices where they are better (deterministic latents and
  pixels, no half-level brightening, ...). Its numbers are the committed demo bundles'.

docs/reproduce.md has one row per field: the reference's file and line, braindiff's choice and why. Every command
that computes (``prepare``, ``extract``, ``reconstruct``, ``roi``, ``evaluate``) takes ``--protocol`` and records
the protocol's name (and fields) in what it writes. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from braindiff_app.config import check_in_allowed

__all__ = ["DEFAULT_PROTOCOL", "PAPER_SESSIONS", "PROTOCOLS", "PROTOCOL_CHOICES", "Protocol", "get_protocol"]

#: NSD sessions the paper used (40 exist since 2023; with all 40 the shared test set is 1000 images, not 982).
PAPER_SESSIONS = tuple(range(1, 38))

#: Allowed values of each field (the first is braindiff's unless stated in the class docstring).
PROTOCOL_CHOICES: dict[str, tuple[str, ...]] = {
    "vdvae_latents": ("mean", "sample"),
    "vdvae_pixels": ("mode", "sample"),
    "vdvae_quantise": ("round", "truncate"),
    "vdvae_uniform": ("clamp", "rescale"),
    "vdvae_resize": ("torch-bilinear", "bilinear"),
    "clip_resize": ("torch-bicubic", "pil-bilinear-512"),
    "clip_uncond": ("grey", "zero-uint8"),
    "noise_timestep": ("first", "ldm"),
    "caption_source": ("coco-json", "curated-npy"),
    "caption_selection": ("first-5", "all"),
}


@dataclass(frozen=True)
class Protocol:
    """One named set of procedural choices (items 1-8 of docs/reproduce.md).

    Attributes
    ----------
    name : str
        Key in :data:`PROTOCOLS`.
    vdvae_latents : str in {"mean", "sample"}
        1. VDVAE regression targets: posterior means, or (reference) posterior samples.
    vdvae_pixels : str in {"mode", "sample"}
        2. VDVAE output pixels: the most probable mixture component's mean, or (reference) a sample of the
        discretised logistic mixture (random component, logistic noise).
    vdvae_quantise : str in {"round", "truncate"}
        2. [-1, 1] -> uint8: round to the nearest level, or (reference) ``astype(uint8)`` truncation.
    vdvae_uniform : str in {"clamp", "rescale"}
        3. Uniform noise of the sampler: clamped to [1e-5, 1 - 1e-5], or (reference) rescaled onto it
        (``uniform_(1e-5, 1 - 1e-5)``).
    vdvae_resize : str in {"torch-bilinear", "bilinear"}
        4. 425 -> 64 VDVAE input resize: torch's antialiased bilinear, or (reference) PIL's bilinear.
    clip_resize : str in {"torch-bicubic", "pil-bilinear-512"}
        5. CLIP-vision input: one torch bicubic resize to 224, or (reference) PIL bilinear to 512, the [-1, 1]
        round trip truncated to uint8, then CLIP's processor (PIL bicubic to 224).
    clip_uncond : str in {"grey", "zero-uint8"}
        5. Unconditional image: grey 0.5, or (reference) the all-zero [-1, 1] image after the processor's uint8
        conversion (127/255).
    noise_timestep : str in {"first", "ldm"}
        6. Timestep the init latent is noised to: the first one run (721 of 50 steps at strength 0.75), or
        (reference, LDM's ``t_enc`` indexing) the one before it (741), then denoised from 721.
    sessions : tuple of int
        7. NSD sessions read by default (1-37, the paper's: 982 test images).
    caption_source : str in {"coco-json", "curated-npy"}
        8. Captions from COCO's captions JSON files (through ``nsd_stim_info_merged.csv`` or ``.pkl``), or
        (reference) ``COCO_73k_annots_curated.npy``.
    caption_selection : str in {"first-5", "all"}
        8. Keep each image's first 5 captions, or (reference) every caption the file holds.
    """

    name: str
    vdvae_latents: str
    vdvae_pixels: str
    vdvae_quantise: str
    vdvae_uniform: str
    vdvae_resize: str
    clip_resize: str
    clip_uncond: str
    noise_timestep: str
    caption_source: str
    caption_selection: str
    sessions: tuple[int, ...] = PAPER_SESSIONS

    def __post_init__(self) -> None:
        for name, allowed in PROTOCOL_CHOICES.items():
            check_in_allowed(getattr(self, name), allowed, f"Protocol.{name}")
        object.__setattr__(self, "sessions", tuple(int(s) for s in self.sessions))

    def to_json(self) -> dict[str, Any]:
        """Every field as a JSON-ready dict (written beside features and in bundle manifests)."""
        data = asdict(self)
        data["sessions"] = list(self.sessions)
        return data

    def differences(self, other: Protocol) -> dict[str, tuple[Any, Any]]:
        """Fields (other than the name) whose values differ: ``{field: (self's, other's)}``."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
                if f.name != "name" and getattr(self, f.name) != getattr(other, f.name)}


PROTOCOLS: dict[str, Protocol] = {
    "braindiff": Protocol(
        name="braindiff", vdvae_latents="mean", vdvae_pixels="mode", vdvae_quantise="round", vdvae_uniform="clamp",
        vdvae_resize="torch-bilinear", clip_resize="torch-bicubic", clip_uncond="grey", noise_timestep="first",
        caption_source="coco-json", caption_selection="first-5",
    ),
    "reference": Protocol(
        name="reference", vdvae_latents="sample", vdvae_pixels="sample", vdvae_quantise="truncate",
        vdvae_uniform="rescale", vdvae_resize="bilinear", clip_resize="pil-bilinear-512", clip_uncond="zero-uint8",
        noise_timestep="ldm", caption_source="curated-npy", caption_selection="all",
    ),
}
DEFAULT_PROTOCOL = "braindiff"


def get_protocol(protocol: str | Protocol | None = None) -> Protocol:
    """The :class:`Protocol` of a name (None: ``"braindiff"``); a Protocol is returned as it is.

    Parameters
    ----------
    protocol : str in {"braindiff", "reference"}, Protocol or None
        - "braindiff": the project's choices (the default);
        - "reference": the reference scripts' procedure.
    """
    if isinstance(protocol, Protocol):
        return protocol
    if protocol is None:
        protocol = DEFAULT_PROTOCOL
    if not isinstance(protocol, str):
        raise TypeError(f"protocol: expected a name in {sorted(PROTOCOLS)} or a Protocol, got "
                        f"{type(protocol).__name__}.")
    check_in_allowed(protocol, tuple(PROTOCOLS), "protocol")
    return PROTOCOLS[protocol]
