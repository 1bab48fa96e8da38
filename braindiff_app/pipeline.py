"""fMRI -> images: the Brain-Diffuser pipeline (regressors, VDVAE guess, dual-guided image-to-image).

:class:`BrainDiffuserPipeline` holds the named components and runs the two stages on any batch of fMRI patterns
or of already predicted features (a subject average, an ROI pattern). Every image's randomness comes from its own
seed (:func:`trial_seeds` derives one per trial id), so a result never depends on batch order or size.
:func:`load_pipeline` builds it for a tier and subject from :class:`~braindiff_app.config.Settings`;
``braindiff reconstruct`` (:mod:`braindiff_app.reconstruct`) runs it over a test set into a bundle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from braindiff_app.bundles import ABLATION_KINDS
from braindiff_app.config import (
    Settings,
    check_in_allowed,
    resolve_device,
    resolve_dtype,
)
from braindiff_app.protocol import Protocol, get_protocol
from braindiff_app.regression import RESCALE_MODES
from braindiff_app.regression.workspace import FEATURE_NAMES, load_regressors
from braindiff_app.stage2 import Stage2Settings

__all__ = [
    "ReconstructionOutput",
    "BrainDiffuserPipeline",
    "trial_seeds",
    "check_finite",
    "check_images",
    "predict_features",
    "average_features",
    "load_pipeline",
]


#: The call's stage-2 defaults: the paper's (see :class:`~braindiff_app.stage2.Stage2Settings`).
_PAPER = Stage2Settings()

#: Called after each stage: (stage name, stages done, stages in all).
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ReconstructionOutput:
    """What one pipeline call produced.

    Attributes
    ----------
    final : array of shape (n_images, size, size, 3), uint8, or None
        Brain-Diffuser reconstructions (None when called with ``final=False``).
    vdvae : array of shape (n_images, res, res, 3), uint8
        The stage-1 VDVAE guess at the VDVAE's resolution (the paper's "only-VDVAE").
    features : dict of str to array
        The features used: ``vdvae`` (n_images, n_latent), ``clip_vision`` (n_images, 257, clip_dim),
        ``clip_text`` (n_images, 77, clip_dim).
    ablations : dict of str to array of shape (n_images, size, size, 3), uint8
        One entry per requested ablation: ``no_vdvae``, ``no_text``, ``no_vision``.
    """

    final: np.ndarray | None
    vdvae: np.ndarray
    features: dict[str, np.ndarray]
    ablations: dict[str, np.ndarray] = field(default_factory=dict)


def check_finite(values: Any, name: str) -> None:
    """Raise ValueError unless every entry of ``values`` is finite (NaN or inf would give black images).

    Parameters
    ----------
    values : array_like
        Numbers to check (features, patterns, predictions).
    name : str
        What they are, used in the message (e.g. ``"features['vdvae']"``).
    """
    values = np.asarray(values)
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        bad = int(np.size(values) - np.isfinite(values).sum())
        raise ValueError(f"{name}: expected finite numbers, got {bad} NaN or infinite value(s) of {values.size}; "
                         "check the inputs and the regressors (a weight too large, a damaged regressor file).")


def check_images(images: np.ndarray, stage: str, seeds: np.ndarray) -> np.ndarray:
    """Raise RuntimeError when a stage returned an all-black image (what NaN or inf inside a model decodes to).

    Parameters
    ----------
    images : array of shape (n_images, height, width, 3), uint8
    stage : str
        The stage's name, for the message.
    seeds : array of shape (n_images,)
        The images' seeds, for the message.

    Returns
    -------
    array
        ``images``, unchanged.
    """
    images = np.asarray(images)
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise RuntimeError(f"{stage} stage: non-finite pixel values; nothing is written.")
    black = [int(seeds[i]) for i in range(len(images)) if not np.any(images[i])]
    if black:
        raise RuntimeError(f"{stage} stage: all-black image(s) for seed(s) {black[:5]} (NaN or infinite values "
                           "inside the model, e.g. from an extreme guidance scale or damaged weights); nothing is "
                           "written.")
    return images


def trial_seeds(trial_ids: Sequence[int] | np.ndarray, seed: int = 0) -> np.ndarray:
    """One seed per trial, a function of (``seed``, trial id) only, so batching never changes a result.

    Parameters
    ----------
    trial_ids : sequence of int, shape (n_images,)
        Non-negative trial identities (NSD image ids).
    seed : int, default 0
        The run's seed.

    Returns
    -------
    array of shape (n_images,), int64
        Seeds in [0, 2**31).
    """
    ids = np.asarray(trial_ids, dtype=np.int64).reshape(-1)
    if (ids < 0).any() or int(seed) < 0:
        raise ValueError(f"trial_ids and seed: expected non-negative integers, got seed {seed} and "
                         f"min trial id {ids.min() if ids.size else None}.")
    states = [np.random.SeedSequence([int(seed), int(t)]).generate_state(1)[0] for t in ids]
    return np.asarray(states, dtype=np.int64) % (2**31)


def predict_features(
    regressors: Mapping[str, Any],
    fmri: np.ndarray,
    rescale: str = "transductive",
) -> dict[str, np.ndarray]:
    """Predict the three feature sets from fMRI patterns with a subject's regressors.

    Parameters
    ----------
    regressors : mapping of str to RidgeRegressor
        Keys ``vdvae``, ``clip_vision``, ``clip_text`` (objects with ``.predict(fmri, rescale=...)``).
    fmri : array of shape (n_trials, n_voxels)
        Patterns in beta file units (the regressors apply their own preprocessing).
    rescale : str in {"none", "transductive", "train", "norm"}, default "transductive"
        - "none": raw ridge predictions;
        - "transductive": z-score across the given rows, then to the train features' mean/std (the reference's
          choice: depends on which rows are given together; pass the whole test set at once);
        - "train": the same with the training predictions' statistics (row-independent);
        - "norm": each prediction to the mean norm of training predictions (single synthetic patterns).

    Returns
    -------
    dict of str to array of shape (n_trials, *target_shape), float32
    """
    check_in_allowed(rescale, RESCALE_MODES, "rescale")
    missing = [name for name in FEATURE_NAMES if name not in regressors]
    if missing:
        raise ValueError(f"regressors: expected keys {list(FEATURE_NAMES)}, missing {missing}.")
    fmri = np.asarray(fmri, dtype=np.float32)
    if fmri.ndim != 2:
        raise ValueError(f"fmri: expected an array of shape (n_trials, n_voxels), got shape {fmri.shape}.")
    return {name: np.asarray(regressors[name].predict(fmri, rescale=rescale), dtype=np.float32)
            for name in FEATURE_NAMES}


def average_features(per_subject: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Mean of predicted features across subjects (the paper's subject average).

    Parameters
    ----------
    per_subject : iterable of mapping of str to array of shape (n_images, ...)
        Each subject's features for the same images in the same order. A generator is consumed one subject at a
        time, so only one subject's features and the running sum are in memory.

    Returns
    -------
    dict of str to array of shape (n_images, ...), float32
    """
    total: dict[str, np.ndarray] = {}
    count = 0
    for i, features in enumerate(per_subject):
        if count and set(features) != set(total):
            raise ValueError(f"per_subject[{i}]: expected features {sorted(total)}, got {sorted(features)}.")
        for name, values in features.items():
            values = np.asarray(values, dtype=np.float32)
            if not count:
                total[name] = values.copy()
            elif values.shape != total[name].shape:
                raise ValueError(f"per_subject[{i}]: features {name!r} have shape {values.shape}, the first "
                                 f"subject's {total[name].shape}.")
            else:
                total[name] += values
        count += 1
    if not count:
        raise ValueError("per_subject: expected the features of at least one subject, got none.")
    return {name: values / np.float32(count) for name, values in total.items()}


class BrainDiffuserPipeline:
    """Two-stage reconstruction from fMRI (or from predicted features), with the paper's ablations.

    Parameters
    ----------
    regressors : mapping of str to RidgeRegressor
        ``vdvae``, ``clip_vision``, ``clip_text`` of one subject; may be empty when only features are passed in
        (subject averages, ROI patterns of several subjects).
    vdvae : VDVAE
        Stage-1 model, on its device.
    vae, image_unet, text_unet, image_encoder, text_encoder, tokenizer, scheduler
        Versatile Diffusion components (see :func:`braindiff_app.models.versatile.load_versatile_diffusion`), on their
        device. The encoders serve only the unconditional inputs (an all-zero image, an empty caption).
    vdvae_layers : int, optional
        Number of VDVAE latent layers the regressor predicts (the rest come from the prior). Default: the VDVAE
        config's ``n_latent_layers`` (31 for imagenet64, as the paper).
    image_size : int, optional
        Side of the final images in pixels. Default: the image UNet's sample size times the VAE's scale factor
        (512 when the config's sample size is null).
    protocol : str in {"braindiff", "reference"} or Protocol, default "braindiff"
        Procedural choices of the VDVAE pixels, the unconditional image and the diffusion start
        (:mod:`braindiff_app.protocol`).
    """

    def __init__(self, regressors, vdvae, vae, image_unet, text_unet, image_encoder, text_encoder, tokenizer,
                 scheduler, *, vdvae_layers: int | None = None, image_size: int | None = None,
                 protocol: str | Protocol | None = None) -> None:
        self.regressors = dict(regressors or {})
        self.vdvae = vdvae
        self.vae = vae
        self.image_unet = image_unet
        self.text_unet = text_unet
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        if vdvae_layers is None:
            vdvae_layers = getattr(getattr(vdvae, "config", None), "n_latent_layers", 31)
        self.vdvae_layers = int(vdvae_layers)
        if image_size is None:
            from braindiff_app.models.img2img import default_image_size

            image_size = default_image_size(image_unet, vae)
        self.image_size = int(image_size)
        self.protocol = get_protocol(protocol)
        self._unconditional: tuple[np.ndarray, np.ndarray] | None = None
        self._img2img = None

    # -- steps ----------------------------------------------------------------------------------------------
    def check_inputs(self, fmri, features, seeds, rescale, ablations, strength, vision_weight, guidance_scale,
                     num_inference_steps) -> int:
        """Check every argument before any model work; return the number of images."""
        if (fmri is None) == (features is None):
            raise ValueError("fmri, features: pass exactly one of them (fMRI patterns, or features already "
                             "predicted, e.g. a subject average).")
        check_in_allowed(rescale, RESCALE_MODES, "rescale")
        for kind in ablations:
            check_in_allowed(kind, ABLATION_KINDS, "ablations")
        # Types and ranges of the stage-2 parameters: Stage2Settings checks them when made.
        Stage2Settings(strength=strength, vision_weight=vision_weight, guidance_scale=guidance_scale,
                       num_inference_steps=num_inference_steps)
        if fmri is not None:
            if not self.regressors:
                raise ValueError("fmri: this pipeline has no regressors (loaded for features only); pass "
                                 "features=..., or load the pipeline for one subject.")
            shape = np.shape(fmri)
            if len(shape) != 2:
                raise ValueError(f"fmri: expected an array of shape (n_trials, n_voxels), got shape {shape}.")
            n = shape[0]
            check_finite(fmri, "fmri")
        else:
            missing = [name for name in FEATURE_NAMES if name not in features]
            if missing:
                raise ValueError(f"features: expected keys {list(FEATURE_NAMES)}, missing {missing}.")
            rows = {name: np.shape(features[name])[0] for name in FEATURE_NAMES}
            if len(set(rows.values())) != 1:
                raise ValueError(f"features: every feature set needs the same number of rows, got {rows}.")
            n = rows["vdvae"]
            for name in FEATURE_NAMES:
                check_finite(features[name], f"features[{name!r}]")
        if np.shape(seeds) != (n,):
            raise ValueError(f"seeds: expected one seed per image, shape ({n},), got shape {np.shape(seeds)}; "
                             "use trial_seeds(trial_ids, seed).")
        seed_values = np.asarray(seeds)
        if seed_values.dtype.kind not in "iu" or (n and (seed_values.min() < 0 or seed_values.max() > 2**63 - 1)):
            raise ValueError(f"seeds: expected non-negative integers below 2**63, got {seed_values.dtype} values "
                             f"{seed_values[:3].tolist()}...")
        return n

    def predict_features(self, fmri: np.ndarray, rescale: str) -> dict[str, np.ndarray]:
        """Regressor predictions for the given patterns (see :func:`predict_features`)."""
        return predict_features(self.regressors, fmri, rescale)

    def vdvae_stage(self, latents: np.ndarray, seeds: np.ndarray, temperature: float = 1.0,
                    batch_size: int = 32) -> np.ndarray:
        """Decode predicted VDVAE latents (first ``vdvae_layers`` layers) into the low-level guess.

        Returns
        -------
        array of shape (n_images, res, res, 3), uint8
        """
        from braindiff_app.models.vdvae import decode_latents

        p = self.protocol
        return decode_latents(self.vdvae, latents, n_layers=self.vdvae_layers, temperature=temperature,
                              seeds=seeds, batch_size=batch_size, progress=False, pixels=p.vdvae_pixels,
                              quantise=p.vdvae_quantise, uniform=p.vdvae_uniform)

    def unconditional_features(self) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of an all-zero image (1, 257, clip_dim) and an empty caption (1, 77, clip_dim), cached."""
        if self._unconditional is None:
            from braindiff_app.models.clip_features import unconditional_features

            self._unconditional = unconditional_features(self.image_encoder, self.text_encoder, self.tokenizer,
                                                         image=self.protocol.clip_uncond)
        return self._unconditional

    def diffusion_stage(self, init_images: np.ndarray | None, vision: np.ndarray | None, text: np.ndarray | None,
                        seeds: np.ndarray, **params: Any) -> np.ndarray:
        """Dual-guided image-to-image from an init image (resized bicubic to ``image_size`` by the stage; None:
        random init latent, full denoising).

        Returns
        -------
        array of shape (n_images, image_size, image_size, 3), uint8
        """
        from braindiff_app.models.img2img import DualGuidedImg2Img

        if self._img2img is None:
            self._img2img = DualGuidedImg2Img(vae=self.vae, image_unet=self.image_unet, text_unet=self.text_unet,
                                              scheduler=self.scheduler, image_size=self.image_size)
        vision_uncond, text_uncond = self.unconditional_features()
        out = self._img2img(init_images, vision, text, seeds=seeds, vision_uncond=vision_uncond,
                            text_uncond=text_uncond, noise_timestep=self.protocol.noise_timestep, **params)
        return np.asarray(out.images)

    # -- the call -------------------------------------------------------------------------------------------
    def __call__(
        self,
        fmri: np.ndarray | None = None,
        *,
        features: Mapping[str, np.ndarray] | None = None,
        seeds: np.ndarray,
        rescale: str = "transductive",
        ablations: Sequence[str] = (),
        final: bool = True,
        strength: float = _PAPER.strength,
        vision_weight: float = _PAPER.vision_weight,
        guidance_scale: float = _PAPER.guidance_scale,
        num_inference_steps: int = _PAPER.num_inference_steps,
        vdvae_temperature: float = 1.0,
        batch_size: int = 8,
        callback: ProgressCallback | None = None,
    ) -> ReconstructionOutput:
        """Reconstruct images from fMRI patterns, or from features already predicted.

        Parameters
        ----------
        fmri : array of shape (n_images, n_voxels), optional
            Patterns in beta file units, turned into features with this pipeline's regressors.
        features : mapping of str to array, optional
            Instead of ``fmri``: ``vdvae`` (n_images, n_latent), ``clip_vision`` (n_images, 257, clip_dim),
            ``clip_text`` (n_images, 77, clip_dim).
        seeds : array of shape (n_images,), int
            One seed per image (:func:`trial_seeds`); each image depends on its own seed only.
        rescale : str in {"none", "transductive", "train", "norm"}, default "transductive"
            How predictions are re-scaled (see :func:`predict_features`); unused with ``features``.
        ablations : sequence of str in {"no_vdvae", "no_text", "no_vision"}, default ()
            Extra images: no VDVAE (random init latent, full denoising), text guidance only, vision guidance only.
            The only-VDVAE ablation is :attr:`ReconstructionOutput.vdvae`.
        final : bool, default True
            Run the full model; False stops after the requested ablations (or after stage 1 when none).
        strength, vision_weight, guidance_scale, num_inference_steps
            Stage-2 parameters; defaults: the paper's, ``Stage2Settings()`` (0.75, 0.6, 7.5, 50). Pass
            ``**Stage2Settings.for_tier(tier).to_json()`` for a tier's (see :class:`~braindiff_app.stage2.
            Stage2Settings`, which checks them).
        vdvae_temperature : float, default 1.0
            Temperature of the VDVAE prior layers beyond ``vdvae_layers``.
        batch_size : int, default 8
            Images per diffusion batch (results do not depend on it).
        callback : callable (stage, done, total), optional
            Progress report after each stage.

        Returns
        -------
        ReconstructionOutput

        Raises
        ------
        ValueError
            A bad argument (see :meth:`check_inputs`), or features (given or predicted) that are not finite.
        RuntimeError
            A stage returned an all-black image (NaN or infinite values inside a model): nothing is returned.
        """
        # 1. Check inputs
        ablations = tuple(dict.fromkeys(ablations))
        self.check_inputs(fmri, features, seeds, rescale, ablations, strength, vision_weight, guidance_scale,
                          num_inference_steps)
        seeds = np.asarray(seeds, dtype=np.int64)
        stages = ["features", "vdvae"] + (["final"] if final else []) + list(ablations)
        report = (lambda stage: callback(stage, stages.index(stage) + 1, len(stages))) if callback else None

        # 2. Predict features (or take those given)
        if features is None:
            features = self.predict_features(fmri, rescale)
        features = {name: np.asarray(features[name], dtype=np.float32) for name in FEATURE_NAMES}
        for name in FEATURE_NAMES:  # predictions, and float32 overflow of values given in float64
            check_finite(features[name], f"features[{name!r}] (predicted or given, as float32)")
        report and report("features")

        # 3. VDVAE stage: decode the predicted latents into the low-level guess
        guess = check_images(self.vdvae_stage(features["vdvae"], seeds, temperature=vdvae_temperature), "vdvae",
                             seeds)
        report and report("vdvae")

        # 4. Dual-guided image-to-image: the full model, then each ablation
        stage2 = Stage2Settings(strength=strength, vision_weight=vision_weight, guidance_scale=guidance_scale,
                                num_inference_steps=num_inference_steps)
        params = dict(**stage2.to_json(), batch_size=batch_size)
        vision, text = features["clip_vision"], features["clip_text"]
        runs = {"final": (guess, vision, text), "no_vdvae": (None, vision, text),
                "no_text": (guess, vision, None), "no_vision": (guess, None, text)}
        images: dict[str, np.ndarray] = {}
        for kind in stages[2:]:
            images[kind] = check_images(self.diffusion_stage(*runs[kind], seeds, **params), kind, seeds)
            report and report(kind)

        # 5. Output
        return ReconstructionOutput(final=images.pop("final", None), vdvae=guess, features=features,
                                    ablations=images)


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------
def load_pipeline(settings: Settings, subject: int | str | None, device=None,
                  protocol: str | Protocol | None = None) -> BrainDiffuserPipeline:
    """Build the pipeline of a tier for a subject, every component on the configured device.

    Parameters
    ----------
    settings : Settings
        Tier, model locations (:meth:`~braindiff_app.config.Settings.require_models`), device and dtype
        preferences.
    subject : int, str or None
        Whose regressors to load; ``"average"`` or None loads none (pass features to the pipeline).
    device : torch.device, optional
        Overrides ``settings.device`` (one process per GPU under ``accelerate launch``).
    protocol : str in {"braindiff", "reference"} or Protocol, default "braindiff"
        See :mod:`braindiff_app.protocol`.

    Returns
    -------
    BrainDiffuserPipeline
    """
    vdvae_path, vd_folder = settings.require_models()
    regressors = {} if subject is None or str(subject) == "average" else load_regressors(settings, subject)
    device = resolve_device(settings.device) if device is None else device
    dtype = resolve_dtype(settings.dtype, device)
    from braindiff_app.models.vdvae import VDVAEConfig, load_demo_vdvae, load_vdvae
    from braindiff_app.models.versatile import load_versatile_diffusion

    if settings.tier == "demo":
        vdvae = load_demo_vdvae(vdvae_path)
    else:
        vdvae = load_vdvae(vdvae_path, VDVAEConfig.imagenet64())
    # Only the text UNet's transformer blocks: dual guidance uses nothing else of it (267 M of 1.71 B parameters).
    vd = load_versatile_diffusion(vd_folder, dtype=dtype, text_unet="attention")
    # The VDVAE stays in float32 (its deep residual stack overflows in float16).
    vdvae = vdvae.to(device)
    # Loaded in ``dtype`` already: only the device changes here.
    modules = {name: None if getattr(vd, name) is None else getattr(vd, name).to(device)
               for name in ("vae", "image_unet", "text_unet", "image_encoder", "text_encoder")}
    return BrainDiffuserPipeline(regressors, vdvae, tokenizer=vd.tokenizer, scheduler=vd.scheduler, protocol=protocol,
                                 **modules)
