"""Brain-Diffuser's stage 2: Versatile Diffusion dual-guided image-to-image from CLIP token features.

init image -> AutoKL encode -> noise to the strength's step -> DDIM denoising with classifier-free guidance, each
cross-attention layer mixing a vision branch and a text branch -> decode. Features come in as arrays (predicted from
fMRI), never as strings or images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from braindiff_app.models._vd_compat import make_dual_unet, set_dual_condition
from braindiff_app.stage2 import Stage2Settings

#: Stage-2 defaults: the paper's (:class:`~braindiff_app.stage2.Stage2Settings`, their one home).
_PAPER = Stage2Settings()

__all__ = ["DualGuidedImg2Img", "ImagesOutput", "NOISE_TIMESTEPS", "DEFAULT_IMAGE_SIZE"]

#: Where the init latent is noised: the first timestep run (diffusers' img2img), or the one before it (the
#: reference's LDM DDIM sampler: ``stochastic_encode`` at ``ddim_timesteps[t_enc]``, then ``decode`` from
#: ``ddim_timesteps[t_enc - 1]``).
NOISE_TIMESTEPS = ("first", "ldm")
#: Output side (pixels) when the image UNet's config has ``"sample_size": null`` (Versatile Diffusion's image UNet
#: before a later fix): Versatile Diffusion's 512.
DEFAULT_IMAGE_SIZE = 512


@dataclass(frozen=True)
class ImagesOutput:
    """Generated images.

    Attributes
    ----------
    images : ndarray of shape (n_images, size, size, 3), uint8
    """

    images: np.ndarray


def _check_array(value, name: str, ndim: int, last: int | None, dtype_kind: str) -> None:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(value).__name__}.")
    if value.ndim != ndim or (last is not None and value.shape[-1] != last):
        expected = "(n_images, height, width, 3)" if dtype_kind == "u" else f"(n_images, n_tokens, {last})"
        raise ValueError(f"{name}: expected shape {expected}, got {value.shape}.")
    if value.dtype.kind != dtype_kind or (dtype_kind == "u" and value.dtype != np.uint8):
        expected = "uint8" if dtype_kind == "u" else "floating point"
        raise ValueError(f"{name}: expected dtype {expected}, got {value.dtype}.")


class DualGuidedImg2Img:
    """Versatile Diffusion dual-guided image-to-image from precomputed CLIP features.

    Parameters
    ----------
    vae : diffusers.AutoencoderKL
    image_unet : diffusers.UNet2DConditionModel
        Converted in place to dual cross-attention (its transformer blocks pair with ``text_unet``'s).
    text_unet : UNetFlatConditionModel or None
        None only when ``image_unet`` already holds the text branch.
    scheduler : diffusers scheduler
        DDIM (eta 0) in Versatile Diffusion and Brain-Diffuser.
    image_size : int, optional
        Output side in pixels, a multiple of the VAE's scale factor. Default: the image UNet's ``sample_size`` times
        the VAE's scale factor; 512 (with a warning) when the config's ``sample_size`` is null.

    Components stay where the caller put them (``.to(device, dtype)``); inputs are moved to them.
    """

    def __init__(self, vae, image_unet, text_unet, scheduler, image_size: int | None = None) -> None:
        self.vae = vae
        self.image_unet = make_dual_unet(image_unet, text_unet)
        self.text_unet = text_unet
        self.scheduler = scheduler
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_size = default_image_size(image_unet, vae) if image_size is None else int(image_size)
        if self.image_size < 1 or self.image_size % self.vae_scale_factor:
            raise ValueError(f"image_size: expected a positive multiple of the VAE's scale factor "
                             f"{self.vae_scale_factor} (pixels), got {image_size}.")

    @torch.no_grad()
    def __call__(self, init_images: np.ndarray | None, vision: np.ndarray | None, text: np.ndarray | None,
                 strength: float = _PAPER.strength, vision_weight: float = _PAPER.vision_weight,
                 guidance_scale: float = _PAPER.guidance_scale, num_inference_steps: int = _PAPER.num_inference_steps,
                 seeds: np.ndarray | None = None, batch_size: int = 8,
                 vision_uncond: np.ndarray | None = None, text_uncond: np.ndarray | None = None,
                 batched_cfg: bool = True, progress: bool = False, noise_timestep: str = "first") -> ImagesOutput:
        """Generate one image per row of the features.

        Parameters
        ----------
        init_images : ndarray of shape (n_images, height, width, 3), uint8, or None
            The stage-1 (VDVAE) guesses, resized (bicubic) to the output size. None: no VDVAE (a random initial
            latent and all ``num_inference_steps`` steps; ``strength`` is ignored).
        vision : ndarray of shape (n_images, 257, clip_dim) or None
            CLIP-vision token features. None: text guidance only (``vision_weight`` is taken as 0).
        text : ndarray of shape (n_images, 77, clip_dim) or None
            CLIP-text token features. None: vision guidance only (``vision_weight`` is taken as 1).
        strength : float in [0, 1], default 0.75
            Fraction of the DDIM schedule run from the noised init image: the last ``int(strength * steps)``
            timesteps (37 of 50). 0 returns the init image through the autoencoder.
        vision_weight : float in [0, 1], default 0.6
            Weight of the vision branch's residual in every cross-attention layer; text gets ``1 - vision_weight``.
        guidance_scale : float, default 7.5
            Classifier-free guidance; 1 disables it (no unconditional pass).
        num_inference_steps : int, default 50
            Length of the full DDIM schedule.
        seeds : int array of shape (n_images,) or None
            One seed per image (the result of an image does not depend on the batch it is in). None: seed 0 for
            every image, as the reference.
        batch_size : int, default 8
            Images per UNet pass (twice that with classifier-free guidance).
        vision_uncond : ndarray of shape (1, 257, clip_dim) or None
            Unconditional vision features (:func:`~braindiff_app.models.clip_features.unconditional_features`);
            needed when guidance_scale != 1 and vision is given.
        text_uncond : ndarray of shape (1, 77, clip_dim) or None
            Unconditional text features; needed when guidance_scale != 1 and text is given.
        batched_cfg : bool, default True
            Run the unconditional and conditional passes as one batch (faster; False halves peak memory).
        progress : bool, default False
            Show a progress bar over batches.
        noise_timestep : str in {"first", "ldm"}, default "first"
            - "first": noise the init latent to the first timestep run (721 of 50 steps at strength 0.75);
            - "ldm": to the timestep before it (741), as the reference's LDM sampler, then denoise from 721.

        Returns
        -------
        ImagesOutput
            ``images`` of shape (n_images, size, size, 3) uint8, size = UNet sample size x VAE factor (512 in VD).
        """
        # 1. Check inputs.
        n_images = self.check_inputs(init_images, vision, text, strength, vision_weight, guidance_scale,
                                     num_inference_steps, seeds, batch_size, vision_uncond, text_uncond)
        from braindiff_app.config import check_in_allowed

        check_in_allowed(noise_timestep, NOISE_TIMESTEPS, "noise_timestep")
        seeds = np.zeros(n_images, np.int64) if seeds is None else np.asarray(seeds)
        # 2. Conditions: ablations set the mixing weight; an unused branch gets no tokens.
        weight = 0.0 if vision is None else 1.0 if text is None else vision_weight
        cond, uncond, n_vision_tokens = self.prepare_conditions(vision, text, vision_uncond, text_uncond,
                                                                n_images, guidance_scale)
        set_dual_condition(self.image_unet, weight, n_vision_tokens)
        # 3. Timesteps: the last int(strength * steps) of the DDIM schedule (all of them without an init image).
        timesteps = self.get_timesteps(num_inference_steps, 1.0 if init_images is None else strength)
        noise_t = self.noise_timestep(timesteps, noise_timestep)
        images = []
        for start in tqdm(range(0, n_images, batch_size), desc="img2img", disable=not progress):
            rows = slice(start, start + batch_size)
            # 4. Initial latents: encoded init image noised to the first timestep, or pure noise.
            init = None if init_images is None else init_images[rows]
            latents = self.prepare_latents(init, seeds[rows], timesteps, noise_t)
            # 5. Guided denoising.
            latents = self.denoise(latents, cond[rows], None if uncond is None else uncond[rows], timesteps,
                                   guidance_scale, batched_cfg)
            # 6. Decode.
            images.append(self.decode_latents(latents))
        return ImagesOutput(images=np.concatenate(images))

    # -- steps ------------------------------------------------------------------------------------------------
    def check_inputs(self, init_images, vision, text, strength, vision_weight, guidance_scale,
                     num_inference_steps, seeds, batch_size, vision_uncond, text_uncond) -> int:
        """Validate every argument before any model work; returns n_images."""
        dim = self.image_unet.config.cross_attention_dim
        if vision is None and text is None:
            raise ValueError("vision, text: both are None; pass at least one of the two feature arrays.")
        named = {"init_images": init_images, "vision": vision, "text": text}
        for name, value in named.items():
            if value is not None:
                _check_array(value, name, 4 if name == "init_images" else 3, 3 if name == "init_images" else dim,
                             "u" if name == "init_images" else "f")
        counts = {name: len(value) for name, value in named.items() if value is not None}
        if len(set(counts.values())) != 1:
            raise ValueError(f"init_images, vision, text: expected the same number of images, got {counts}.")
        n_images = next(iter(counts.values()))
        for name, value in (("strength", strength), ("vision_weight", vision_weight)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}: expected a float in [0, 1], got {value!r}.")
        if float(guidance_scale) < 0:
            raise ValueError(f"guidance_scale: expected >= 0 (1 disables guidance), got {guidance_scale!r}.")
        for name, value in (("num_inference_steps", num_inference_steps), ("batch_size", batch_size)):
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}.")
        if seeds is not None:
            seeds = np.asarray(seeds)
            if seeds.shape != (n_images,) or seeds.dtype.kind not in "iu":
                raise ValueError(f"seeds: expected an integer array of shape ({n_images},), got "
                                 f"{seeds.dtype} {seeds.shape}.")
        if guidance_scale != 1:
            for name, feats, uncond in (("vision_uncond", vision, vision_uncond), ("text_uncond", text, text_uncond)):
                if feats is None:
                    continue
                if uncond is None:
                    raise ValueError(f"{name}: needed for classifier-free guidance (guidance_scale="
                                     f"{guidance_scale}); compute it with unconditional_features(...).")
                _check_array(uncond, name, 3, dim, "f")
                if uncond.shape != (1, *feats.shape[1:]):
                    raise ValueError(f"{name}: expected shape {(1, *feats.shape[1:])}, got {uncond.shape}.")
        return n_images

    def prepare_conditions(self, vision, text, vision_uncond, text_uncond, n_images: int, guidance_scale: float):
        """Concatenate [vision tokens, text tokens] per image: (n_images, n_tokens, clip_dim) on the UNet's device.

        Returns the conditional and unconditional (None without guidance) contexts and the vision token count.
        """
        device, dtype = self.image_unet.device, self.image_unet.dtype

        def context(v, t, n):
            parts = [np.broadcast_to(p, (n, *p.shape[1:])) for p in (v, t) if p is not None]
            return torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32)).to(device, dtype)

        cond = context(vision, text, n_images)
        uncond = None
        if guidance_scale != 1:
            uncond = context(None if vision is None else vision_uncond, None if text is None else text_uncond,
                             n_images)
        return cond, uncond, 0 if vision is None else vision.shape[1]

    def get_timesteps(self, num_inference_steps: int, strength: float) -> torch.Tensor:
        """The last ``int(strength * num_inference_steps)`` timesteps of the scheduler's schedule."""
        self.scheduler.set_timesteps(num_inference_steps)
        n_run = min(int(strength * num_inference_steps), num_inference_steps)
        return self.scheduler.timesteps[num_inference_steps - n_run:]

    def noise_timestep(self, timesteps: torch.Tensor, rule: str) -> torch.Tensor | None:
        """The timestep (shape (1,)) the init latent is noised to: ``timesteps[0]`` ("first") or, for "ldm", the
        schedule's timestep before it (None when nothing runs)."""
        if len(timesteps) == 0:
            return None
        if rule == "first":
            return timesteps[:1]
        full = self.scheduler.timesteps
        index = len(full) - len(timesteps) - 1
        if index < 0:
            import warnings

            warnings.warn("noise_timestep='ldm': strength 1 runs the whole schedule, which has no timestep before "
                          "its first; noising to the first instead (the reference's sampler fails here).",
                          UserWarning, stacklevel=3)
            return timesteps[:1]
        return full[index:index + 1]

    def prepare_latents(self, init_images: np.ndarray | None, seeds: np.ndarray,
                        timesteps: torch.Tensor, noise_t: torch.Tensor | None = None) -> torch.Tensor:
        """Initial latents (n, 4, size/f, size/f), float32, each image drawn with its own seeded generator.

        ``noise_t`` (shape (1,)): the timestep the encoded init image is noised to; default ``timesteps[0]``."""
        vae_device, vae_dtype = self.vae.device, self.vae.dtype
        channels = self.image_unet.config.in_channels
        side = self.image_size // self.vae_scale_factor
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        if init_images is None:
            noise = torch.stack([torch.randn(channels, side, side, generator=g) for g in generators])
            return noise.to(self.image_unet.device) * self.scheduler.init_noise_sigma
        pixels = torch.tensor(init_images).to(vae_device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            pixels = torch.nn.functional.interpolate(pixels, size=(self.image_size, self.image_size), mode="bicubic",
                                                     antialias=True, align_corners=False).clamp(-1, 1)
        posterior = self.vae.encode(pixels.to(vae_dtype)).latent_dist
        eps = torch.stack([torch.randn(posterior.mean.shape[1:], generator=g) for g in generators])
        latents = posterior.mean.float() + posterior.std.float() * eps.to(vae_device)
        latents = (latents * self.vae.config.scaling_factor).to(self.image_unet.device)
        if len(timesteps) == 0:
            return latents
        noise = torch.stack([torch.randn(latents.shape[1:], generator=g) for g in generators]).to(latents.device)
        noise_t = timesteps[:1] if noise_t is None else noise_t
        return self.scheduler.add_noise(latents, noise, noise_t.repeat(len(latents)))

    def denoise(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None,
                timesteps: torch.Tensor, guidance_scale: float, batched_cfg: bool = True) -> torch.Tensor:
        """DDIM steps with classifier-free guidance; latents stay float32, the UNet runs in its own dtype."""
        dtype = self.image_unet.dtype
        for t in timesteps:
            model_input = self.scheduler.scale_model_input(latents, t).to(dtype)
            if uncond is None:
                noise_pred = self.image_unet(model_input, t, encoder_hidden_states=cond).sample.float()
            else:
                if batched_cfg:
                    both = self.image_unet(torch.cat([model_input] * 2), t,
                                           encoder_hidden_states=torch.cat([uncond, cond])).sample.float()
                    pred_uncond, pred_cond = both.chunk(2)
                else:
                    pred_uncond = self.image_unet(model_input, t, encoder_hidden_states=uncond).sample.float()
                    pred_cond = self.image_unet(model_input, t, encoder_hidden_states=cond).sample.float()
                noise_pred = pred_uncond + guidance_scale * (pred_cond - pred_uncond)
            latents = self.scheduler.step(noise_pred, t, latents).prev_sample
        return latents

    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Latents -> uint8 images (n, size, size, 3) on the CPU."""
        latents = latents.to(self.vae.device, self.vae.dtype) / self.vae.config.scaling_factor
        pixels = self.vae.decode(latents).sample.float()
        pixels = ((pixels / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()


def default_image_size(image_unet, vae) -> int:
    """Output side (pixels) of a Versatile Diffusion image UNet and VAE: ``sample_size`` x the VAE's scale factor.

    A config with ``"sample_size": null`` (Versatile Diffusion's image UNet before a later fix) gives
    :data:`DEFAULT_IMAGE_SIZE` (512) with a warning.
    """
    side = getattr(image_unet.config, "sample_size", None)
    if isinstance(side, list | tuple):
        side = side[0]
    if side is None:
        import warnings

        warnings.warn(f"image_unet config: sample_size is null; using {DEFAULT_IMAGE_SIZE} px images (Versatile "
                      "Diffusion's size; pass image_size=... for another).", UserWarning, stacklevel=3)
        return DEFAULT_IMAGE_SIZE
    return int(side) * 2 ** (len(vae.config.block_out_channels) - 1)
