"""The closed loop: image -> encoder -> predicted brain response -> regressors -> image.

An encoding model (:mod:`braindiff_app.regression.encoder`) predicts every voxel's response to an image from its
CLIP-vision tokens and VDVAE latents, which the tier's pipeline computes (:func:`image_features`). With it:

- :meth:`EncodingModels.round_trip`: an image's predicted response, decoded back through the subject's regressors
  and both stages (VDVAE guess and final image);
- :meth:`EncodingModels.best_of_n`: an ROI recipe generated with N seeds, each final image scored by the encoder's
  predicted activation of the recipe's regions (:func:`region_score`: the weighted sum of each region's mean
  predicted response, weights as in the recipe: activated regions minus suppressed ones), ranked by score;
- :meth:`EncodingModels.voxel_tuning`: a voxel's held-out accuracy and the test images it responds to most,
  measured and predicted;
- :meth:`EncodingModels.steer`: an image moved towards (+) or away from (-) a region: its CLIP features shifted
  along the region's direction, regenerated from the image itself, scored by the encoder.

Models come from the ROI studio's workspace (:func:`braindiff_app.roi.roi_settings`): each subject's encoder is
``settings.subject_dir("encoders", s) / "encoder.safetensors"`` (``braindiff fit-encoder``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from braindiff_app.config import Settings
from braindiff_app.images import check_images
from braindiff_app.pipeline import BrainDiffuserPipeline, predict_features
from braindiff_app.regression import FEATURE_NAMES
from braindiff_app.regression.encoder import ENCODER_FILE, EncodingModel, encoder_features, load_encoder
from braindiff_app.roi import ROIModels, load_roi_models, predict_pattern_features, synthetic_pattern
from braindiff_app.roi_recipe import MAX_CANDIDATES, Recipe, check_candidates

__all__ = [
    "MAX_CANDIDATES",
    "MIN_IMAGE_SIDE",
    "encoder_path",
    "subjects_with_encoders",
    "image_features",
    "region_score",
    "RoundTrip",
    "Ranked",
    "VoxelTuning",
    "EncodingModels",
    "load_encoding_models",
]

#: Smallest image side accepted (pixels): smaller images carry no content the encoder could read.
MIN_IMAGE_SIDE = 8


def encoder_path(settings: Settings, subject: int | str):
    """Where ``braindiff fit-encoder`` writes subject ``subject``'s encoder."""
    return settings.subject_dir("encoders", subject) / ENCODER_FILE


def subjects_with_encoders(settings: Settings) -> list[str]:
    """Subjects (``"1"``, ...) whose encoder exists in the workspace, by number."""
    root = settings.workspace / "encoders"
    found = [f.name.removeprefix("subj") for f in root.glob("subj*") if (f / ENCODER_FILE).is_file()] \
        if root.is_dir() else []
    return sorted((str(int(n)) for n in found if n.isdigit()), key=int)


def image_features(pipeline: BrainDiffuserPipeline, images: np.ndarray) -> dict[str, np.ndarray]:
    """CLIP-vision tokens and VDVAE latents of images, made as ``braindiff extract`` makes them.

    Parameters
    ----------
    pipeline : BrainDiffuserPipeline
        Its ``image_encoder`` and ``vdvae`` compute the features, with its protocol's resizes and latent mode.
    images : array of shape (n_images, height, width, 3), uint8

    Returns
    -------
    dict
        ``clip_vision`` (n_images, n_tokens, clip_dim) and ``vdvae`` (n_images, n_latent), float32.
    """
    from braindiff_app.models.clip_features import clip_vision_features
    from braindiff_app.models.vdvae import extract_latents

    images = check_images(images, "images")
    if min(images.shape[1:3]) < MIN_IMAGE_SIDE:
        raise ValueError(f"images: expected at least {MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels, got "
                         f"{images.shape[2]} x {images.shape[1]}; choose a larger image.")
    protocol = pipeline.protocol
    return {"clip_vision": clip_vision_features(pipeline.image_encoder, images, resize=protocol.clip_resize),
            "vdvae": extract_latents(pipeline.vdvae, images, n_layers=pipeline.vdvae_layers,
                                     mode=protocol.vdvae_latents, progress=False, resample=protocol.vdvae_resize)}


def region_score(responses: np.ndarray, regions: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted predicted activation of regions: ``sum_r weight_r * mean(response over region r's voxels)``.

    Parameters
    ----------
    responses : array of shape (n_images, n_voxels)
        z-scored responses (an encoder's predictions).
    regions : mapping of str to array of int
        Region name -> voxel indices (``ROIAtlas.regions``).
    weights : mapping of str to float
        Region name -> weight (a recipe's ``regions``: positive activates, negative suppresses).

    Returns
    -------
    array of shape (n_images,), float64
    """
    responses = np.atleast_2d(np.asarray(responses, dtype=np.float64))
    missing = [r for r in weights if r not in regions]
    if missing:
        raise ValueError(f"weights: region(s) {missing} have no voxels in this subject.")
    if not weights:
        raise ValueError("weights: expected at least one region to score.")
    return sum(float(w) * responses[:, np.asarray(regions[r])].mean(axis=1) for r, w in weights.items())


@dataclass(frozen=True)
class RoundTrip:
    """An image's predicted response and the images decoded from it.

    Attributes
    ----------
    response : array of shape (n_voxels,), float32
        Predicted response, z-scored per voxel.
    vdvae, final : arrays of shape (height, width, 3), uint8
        The stage-1 guess and the final image decoded from ``response``.
    """

    response: np.ndarray
    vdvae: np.ndarray
    final: np.ndarray


@dataclass(frozen=True)
class Ranked:
    """Best-of-N candidates, best first.

    Attributes
    ----------
    recipe : Recipe
        The recipe with ``settings["candidates"]`` = N and ``ranking`` = ((seed, score), ...) best first.
    finals, vdvaes : arrays of shape (n_candidates, height, width, 3), uint8
        Ranked like ``recipe.ranking``.
    scores : array of shape (n_candidates,), float64
        Predicted weighted activation (:func:`region_score`), descending.
    seeds : array of shape (n_candidates,), int64
    """

    recipe: Recipe
    finals: np.ndarray
    vdvaes: np.ndarray
    scores: np.ndarray
    seeds: np.ndarray


@dataclass(frozen=True)
class VoxelTuning:
    """One voxel's encoding accuracy and preferred test images.

    Attributes
    ----------
    voxel : int
        Index into the subject's nsdgeneral voxels.
    regions : list of str
        Regions holding the voxel.
    accuracy : float
        Pearson r of predicted and measured responses over the test images.
    true_accuracy : float or None
        r against the true noiseless responses (demo tier), None elsewhere.
    top_measured, top_predicted : arrays of shape (k,), int64
        Test-image positions (rows of the encoder's evaluation) with the highest measured / predicted response.
    test_nsd_ids : array of shape (n_test,), int64
        NSD id of each test-image position.
    """

    voxel: int
    regions: list[str]
    accuracy: float
    true_accuracy: float | None
    top_measured: np.ndarray
    top_predicted: np.ndarray
    test_nsd_ids: np.ndarray


@dataclass(frozen=True)
class EncodingModels:
    """The ROI studio's models (pipeline, atlases, regressors) plus each subject's encoder."""

    roi: ROIModels
    encoders: dict[str, EncodingModel]

    @property
    def subjects(self) -> list[str]:
        """Subjects with an encoder and regressors."""
        return [s for s in self.roi.subjects if s in self.encoders]

    def encoder(self, subject: str) -> EncodingModel:
        if subject not in self.encoders:
            raise ValueError(f"subject: expected one of {self.subjects} (subjects with an encoder), got "
                             f"{subject!r}; fit one with `braindiff fit-encoder --subject {subject}`.")
        return self.encoders[subject]

    def predict(self, subject: str, images: np.ndarray) -> np.ndarray:
        """Predicted z-scored responses (n_images, n_voxels) of ``subject`` to images (n, h, w, 3) uint8."""
        encoder = self.encoder(subject)
        feats = image_features(self.roi.pipeline, images)
        return encoder.predict(encoder_features(encoder.feature_set, feats["clip_vision"], feats["vdvae"]))

    def decode(self, subject: str, responses: np.ndarray, seed: int = 0, stage2: Mapping | None = None):
        """Images decoded from z-scored responses (n, n_voxels) by the subject's regressors and both stages."""
        encoder = self.encoder(subject)
        features = predict_features(self.roi.regressors[subject], encoder.to_betas(responses), rescale="train")
        seeds = np.full(len(responses), int(seed), dtype=np.int64)
        return self.roi.pipeline(features=features, seeds=seeds, **dict(stage2 or {}))

    def round_trip(self, subject: str, image: np.ndarray, seed: int = 0,
                   stage2: Mapping | None = None) -> RoundTrip:
        """An image -> its predicted response -> the VDVAE guess and final image decoded from that response."""
        response = self.predict(subject, np.asarray(image)[None])
        out = self.decode(subject, response, seed, stage2)
        return RoundTrip(response=response[0], vdvae=out.vdvae[0], final=out.final[0])

    def best_of_n(self, recipe: Recipe, n: int, scoring_subject: str | None = None) -> Ranked:
        """Generate ``recipe`` with seeds ``recipe.seed ... recipe.seed + n - 1`` in one batch; rank by score.

        See :meth:`rank` for the score. Each candidate is the image a single generate with its seed makes.
        """
        n = check_candidates(n)
        features = self.roi.features(recipe)
        seeds = recipe.seed + np.arange(n, dtype=np.int64)
        batch = {name: np.repeat(features[name], n, axis=0) for name in FEATURE_NAMES}
        out = self.roi.pipeline(features=batch, seeds=seeds, **recipe.stage2.to_json())
        return self.rank(recipe, out.final, out.vdvae, seeds, scoring_subject)

    def rank(self, recipe: Recipe, finals: np.ndarray, vdvaes: np.ndarray, seeds: np.ndarray,
             scoring_subject: str | None = None) -> Ranked:
        """Rank a recipe's candidate images by the encoder's predicted activation of its regions.

        The score of a candidate is :func:`region_score` of the encoder's prediction for its final image, with
        the recipe's region weights (painted voxels count as one more region). The subject average is scored by
        the mean over the subjects with an encoder.

        Parameters
        ----------
        recipe : Recipe
        finals, vdvaes : arrays of shape (n_candidates, height, width, 3), uint8
        seeds : array of shape (n_candidates,), int
        scoring_subject : str, optional
            Score with this subject's encoder only.
        """
        finals, seeds = check_images(np.asarray(finals), "finals"), np.asarray(seeds, dtype=np.int64)
        if not 1 <= len(finals) <= MAX_CANDIDATES or seeds.shape != (len(finals),) or len(vdvaes) != len(finals):
            raise ValueError(f"finals, vdvaes, seeds: expected 1 to {MAX_CANDIDATES} candidates, one seed each, got "
                             f"{len(finals)} images, {len(vdvaes)} guesses and seeds of shape {seeds.shape}.")
        scorers = [scoring_subject] if scoring_subject else (
            [recipe.subject] if recipe.subject != "average" else self.subjects)
        scores, used = np.zeros(len(finals)), 0
        for subject in scorers:
            regions = dict(self.roi.atlases[subject].regions)
            weights = {r: w for r, w in recipe.regions.items() if r in regions}
            if recipe.painted and subject == recipe.subject:
                regions["painted"] = np.asarray(recipe.painted)
                weights["painted"] = recipe.painted_weight
            if not weights:  # the average may name regions one of its subjects lacks: that subject cannot score
                continue
            scores += region_score(self.predict(subject, finals), regions, weights)
            used += 1
        if not used:
            raise ValueError(f"regions: none of {sorted(recipe.regions)} is a region of the scoring subject(s) "
                             f"{scorers}: nothing to rank the candidates by.")
        scores /= used
        order = np.argsort(-scores, kind="stable")
        ranking = tuple((int(seeds[i]), round(float(scores[i]), 6)) for i in order)
        ranked = replace(recipe, settings={**recipe.settings, "candidates": len(finals)}, ranking=ranking)
        return Ranked(recipe=ranked, finals=finals[order], vdvaes=np.asarray(vdvaes)[order], scores=scores[order],
                      seeds=seeds[order])

    def voxel_tuning(self, subject: str, voxel: int, predicted: np.ndarray, k: int = 6) -> VoxelTuning:
        """A voxel's accuracy and its top-``k`` test images by measured and by predicted response.

        Parameters
        ----------
        subject : str
        voxel : int
            Index into the subject's nsdgeneral voxels (e.g. from the flatmap's pixel -> voxel lookup).
        predicted : array of shape (n_test, n_voxels)
            The encoder's predictions for the test images, in the order of its evaluation's ``test_nsd_ids``
            (:meth:`predict` of those images).
        k : int, default 6
        """
        encoder = self.encoder(subject)
        if isinstance(voxel, bool) or not isinstance(voxel, (int, np.integer)) or not 0 <= voxel < encoder.n_voxels:
            raise ValueError(f"voxel: expected an index in 0..{encoder.n_voxels - 1} (subject {subject}), got "
                             f"{voxel!r}.")
        ev = encoder.evaluation
        missing = [key for key in ("accuracy", "test_measured", "test_nsd_ids") if key not in ev]
        if missing:
            raise ValueError(f"subject {subject}'s encoder holds no held-out evaluation ({', '.join(missing)}); "
                             "refit it with `braindiff fit-encoder --overwrite`.")
        predicted = np.asarray(predicted)
        if predicted.shape != ev["test_measured"].shape:
            raise ValueError(f"predicted: expected shape {ev['test_measured'].shape} (n_test, n_voxels), got "
                             f"{predicted.shape}.")
        measured = ev["test_measured"][:, voxel].astype(np.float64)
        regions = [name for name, idx in self.roi.atlases[subject].regions.items() if voxel in set(idx.tolist())]
        true = float(ev["true_accuracy"][voxel]) if "true_accuracy" in ev else None
        return VoxelTuning(voxel=int(voxel), regions=regions, accuracy=float(ev["accuracy"][voxel]),
                           true_accuracy=true, top_measured=np.argsort(-measured, kind="stable")[:k],
                           top_predicted=np.argsort(-predicted[:, voxel], kind="stable")[:k],
                           test_nsd_ids=np.asarray(ev["test_nsd_ids"]))

    def region_direction(self, subject: str, region: str) -> dict[str, np.ndarray]:
        """A region's direction in feature space: the regressors' re-scaled prediction for its indicator pattern
        minus the prediction for the all-zero pattern (the mean response); dict of (1, ...) float32 arrays."""
        atlas = self.roi.atlases[subject]
        pattern = synthetic_pattern(atlas, {region: 1.0})
        both = predict_pattern_features(self.roi.regressors[subject], np.stack([pattern, np.zeros_like(pattern)]))
        return {name: both[name][:1] - both[name][1:] for name in FEATURE_NAMES}

    def steer(self, subject: str, image: np.ndarray, region: str, dials: Sequence[float], seed: int = 0,
              stage2: Mapping | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Move an image towards (+) or away from (-) a region and regenerate it from the image itself.

        For each dial value ``d`` in [-1, 1], the image's CLIP features predicted from its predicted response
        (the round trip's) move by ``d`` times the region's direction (:meth:`region_direction`); stage 2 starts
        from the image's own VDVAE latents (the image as init). Each result is scored by the encoder's predicted
        mean response of the region.

        Returns
        -------
        images : array of shape (n_dials, height, width, 3), uint8
        activation : array of shape (n_dials,), float64
            Predicted mean z-scored response of the region's voxels to each image.
        """
        dials = np.asarray(dials, dtype=np.float64)
        if dials.ndim != 1 or not len(dials) or not np.all(np.abs(dials) <= 1):
            raise ValueError(f"dials: expected values in [-1, 1], got {dials.tolist()}.")
        encoder = self.encoder(subject)
        image = np.asarray(image)[None]
        feats = image_features(self.roi.pipeline, image)
        response = encoder.predict(encoder_features(encoder.feature_set, feats["clip_vision"], feats["vdvae"]))
        predicted = predict_features(self.roi.regressors[subject], encoder.to_betas(response), rescale="train")
        direction = self.region_direction(subject, region)
        features = {"vdvae": np.repeat(feats["vdvae"], len(dials), axis=0)}
        for name in ("clip_vision", "clip_text"):
            shift = dials.reshape(-1, *[1] * (predicted[name].ndim - 1)).astype(np.float32) * direction[name]
            features[name] = predicted[name] + shift
        out = self.roi.pipeline(features=features, seeds=np.full(len(dials), int(seed), dtype=np.int64),
                                **dict(stage2 or {}))
        regions = self.roi.atlases[subject].regions
        return out.final, region_score(self.predict(subject, out.final), regions, {region: 1.0})


def load_encoding_models(settings: Settings, roi: ROIModels | None = None) -> EncodingModels:
    """The ROI models of ``settings`` (loaded unless given) and every encoder found in its workspace.

    Raises
    ------
    FileNotFoundError
        No subject has an encoder (the message names ``braindiff fit-encoder``).
    """
    found = subjects_with_encoders(settings)
    if not found:
        raise FileNotFoundError(f"no subject has an encoder under {settings.workspace / 'encoders'}; run "
                                "`braindiff fit-encoder --subject S` first.")
    roi = roi if roi is not None else load_roi_models(settings)
    encoders = {s: load_encoder(encoder_path(settings, s)) for s in found if s in roi.atlases}
    for s, enc in encoders.items():
        if enc.n_voxels != roi.atlases[s].n_voxels:
            raise ValueError(f"{encoder_path(settings, s)}: {enc.n_voxels} voxels, subject {s}'s atlas has "
                             f"{roi.atlases[s].n_voxels}; refit the encoder for this prepared subject.")
    return EncodingModels(roi=roi, encoders=encoders)
