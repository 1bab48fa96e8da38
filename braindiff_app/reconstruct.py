"""Reconstruct a subject's whole test set into a bundle (``braindiff reconstruct``).

Features are predicted for the whole test set at once (so the "transductive" rescale sees the same rows however
the run is split), then the image stages run trial batch by trial batch into a :class:`~braindiff_app.bundles.
BundleWriter`: a killed run resumes at the first trial not written. Under ``accelerate launch`` the pending
trials are split between processes (one per GPU) with accelerate's ``PartialState``; a plain run is one process.

The subject average (``subject="average"``) is the mean of the features each subject's own regressors predict
from its own fMRI, matched by NSD image id across the subjects that have regressors.

``features="true"`` reconstructs from the seen test images' own features (``braindiff extract``'s ``*_test.npy``)
instead of predicted ones: no fMRI or regressor enters, so the bundle measures the image models' ceiling, what a
perfect brain read-out would give, and is named ``{tier}-subjNN-true-features`` (NN: the subject).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from braindiff_app._bundle_io import read_json
from braindiff_app.arrays import read_array
from braindiff_app.bundles import (
    FEATURE_SOURCES,
    REQUIRED_KINDS,
    BundleError,
    BundleWriter,
    Manifest,
    manifest_changes,
    read_manifest,
    recover_bundle,
)
from braindiff_app.config import Settings, check_in_allowed, resolve_device, subject_folder
from braindiff_app.pipeline import (
    BrainDiffuserPipeline,
    average_features,
    load_pipeline,
    predict_features,
    trial_seeds,
)
from braindiff_app.protocol import Protocol, get_protocol
from braindiff_app.provenance import files_fingerprint, model_identities
from braindiff_app.regression import FEATURE_NAMES, RESCALE_MODES, load_regressors, subjects_with_regressors
from braindiff_app.stage2 import Stage2Settings

__all__ = ["FEATURE_SOURCES", "TestSet", "load_test_set", "predict_test_features", "true_test_features",
           "bundle_name", "reconstruct_subject"]


@dataclass(frozen=True)
class TestSet:
    """A prepared subject's test trials (its prepared-subject files), one row per image.

    Attributes
    ----------
    fmri : array of shape (n_trials, n_voxels), float32
    images : array of shape (n_trials, height, width, 3), uint8
    captions : list of list of str
    trial_ids : array of shape (n_trials,), int64
        NSD image ids (0-based).
    """

    fmri: np.ndarray
    images: np.ndarray
    captions: list[list[str]]
    trial_ids: np.ndarray


def load_test_set(settings: Settings, subject: int | str) -> TestSet:
    """Read a prepared subject's test split (``fmri_test.npy``, ``images_test.npy``, captions, NSD ids).

    Raises
    ------
    FileNotFoundError
        Naming the missing file and the command that writes it.
    ValueError
        If the files disagree on the number of trials.
    """
    folder = settings.subject_dir("prepared", subject)
    names = ("fmri_test.npy", "images_test.npy", "captions_test.json", "meta.json")
    missing = [str(folder / n) for n in names if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(f"prepared test data missing: {', '.join(missing)}; run "
                                f"`braindiff prepare --subject {subject}` (tier {settings.tier}) first.")
    fmri = read_array(folder / "fmri_test.npy", finite=True)
    images = read_array(folder / "images_test.npy")
    captions = read_json(folder / "captions_test.json")
    meta = read_json(folder / "meta.json")
    if "nsd_ids_test" not in meta:
        raise ValueError(f"{folder / 'meta.json'}: expected key 'nsd_ids_test' (the test images' NSD ids); "
                         "rerun `braindiff prepare` to rewrite it.")
    ids = np.asarray(meta["nsd_ids_test"], dtype=np.int64)
    counts = {"fmri_test.npy": len(fmri), "images_test.npy": len(images), "captions_test.json": len(captions),
              "meta.json nsd_ids_test": len(ids)}
    if len(set(counts.values())) != 1:
        raise ValueError(f"{folder}: test files disagree on the number of trials {counts}; rerun prepare.")
    return TestSet(fmri=fmri, images=images, captions=captions, trial_ids=ids)


def predict_test_features(settings: Settings, subject: int | str, rescale: str = "transductive",
                          regressors=None) -> tuple[TestSet, dict[str, np.ndarray], list[str]]:
    """Predicted features of a subject's whole test set, or the subject average.

    Parameters
    ----------
    settings : Settings
    subject : int or str
        A subject number, or ``"average"``: the mean across every subject with regressors of the features its
        own regressors predict from its own fMRI, over the NSD ids all of them saw (in the first one's order).
    rescale : str in {"none", "transductive", "train", "norm"}, default "transductive"
    regressors : mapping, optional
        The subject's regressors when already loaded (not for the average).

    Returns
    -------
    test : TestSet
        The test set the rows follow (for the average: the first subject's, restricted to the shared ids).
    features : dict of str to array of shape (n_trials, ...), float32
    subjects : list of str
        The subjects whose predictions went in.
    """
    check_in_allowed(rescale, RESCALE_MODES, "rescale")
    if str(subject) != "average":
        test = load_test_set(settings, subject)
        regressors = regressors or load_regressors(settings, subject)
        return test, predict_features(regressors, test.fmri, rescale), [str(int(subject))]
    subjects = subjects_with_regressors(settings)
    if not subjects:
        raise FileNotFoundError(f"subject average: no subject has regressors under "
                                f"{settings.workspace / 'regressors'}; run `braindiff fit` for some subjects.")
    tests = {s: load_test_set(settings, s) for s in subjects}
    first = tests[subjects[0]]
    shared = set(first.trial_ids.tolist()).intersection(*(set(t.trial_ids.tolist()) for t in tests.values()))
    keep = np.array([i for i, t in enumerate(first.trial_ids) if int(t) in shared], dtype=np.int64)
    if keep.size == 0:
        raise ValueError(f"subject average: subjects {subjects} share no test image (NSD id).")
    ids = first.trial_ids[keep]

    def per_subject():  # one subject's features at a time, rows in the order of ``ids``
        for s in subjects:
            row_of = {int(t): i for i, t in enumerate(tests[s].trial_ids)}
            rows = np.array([row_of[int(t)] for t in ids])
            features = predict_features(load_regressors(settings, s), tests[s].fmri, rescale)
            yield {name: values[rows] for name, values in features.items()}

    features = average_features(per_subject())
    if len(keep) < len(first.trial_ids):  # otherwise keep the memory-mapped arrays as they are
        first = TestSet(fmri=np.asarray(first.fmri)[keep], images=np.asarray(first.images)[keep],
                        captions=[first.captions[i] for i in keep], trial_ids=ids)
    return first, features, subjects


def true_test_features(settings: Settings, subject: int | str) -> tuple[TestSet, dict[str, np.ndarray], list[str]]:
    """The seen test images' own features, as ``braindiff extract`` wrote them: the image models' ceiling.

    Parameters
    ----------
    settings : Settings
    subject : int or str
        A subject number (its prepared test images and extracted features; not ``"average"``).

    Returns
    -------
    test : TestSet
    features : dict of str to array of shape (n_trials, ...), float32 (memory-mapped)
        ``vdvae_test.npy``, ``clip_vision_test.npy`` and ``clip_text_test.npy``, one row per test trial.
    subjects : list of str
        The subject.

    Raises
    ------
    FileNotFoundError
        A feature file is missing (naming it and the command that writes it).
    ValueError
        ``subject`` is not a number, or a feature file's rows do not match the test trials.
    """
    if str(subject) == "average":
        raise ValueError("subject: true features are a subject's own test images' features; expected a subject "
                         "number like 1, got 'average'.")
    test = load_test_set(settings, subject)
    folder = settings.subject_dir("features", subject)
    features = {}
    for name in FEATURE_NAMES:
        path = folder / f"{name}_test.npy"
        if not path.is_file():
            command = "vdvae" if name == "vdvae" else "clip"
            raise FileNotFoundError(f"{path}: missing; run `braindiff extract {command} --subject {subject}` (tier "
                                    f"{settings.tier}) first.")
        values = read_array(path, finite=True)
        if values.ndim < 2 or len(values) != len(test.trial_ids):
            raise ValueError(f"{path}: expected one row per test trial ({len(test.trial_ids)} rows), got shape "
                             f"{values.shape}; rerun `braindiff extract` for subject {subject}.")
        features[name] = values
    return test, features, [str(int(subject))]


def _check_writable(folder: Path) -> None:
    """Raise OSError naming ``folder`` unless it can be created and written (checked with a small file)."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise OSError(f"{folder}: cannot write the bundle there ({exc.strerror or exc}); choose a writable --out "
                      "or --home.") from None


def bundle_name(settings: Settings, subject: int | str, features: str = "predicted") -> str:
    """Bundle folder name: ``{tier}-subj01``, ``{tier}-average``, or ``{tier}-subj01-true-features`` for
    reconstructions from the seen images' own features."""
    check_in_allowed(features, FEATURE_SOURCES, "features")
    return f"{settings.tier}-{subject_folder(subject)}" + ("-true-features" if features == "true" else "")


def reconstruct_subject(
    settings: Settings,
    subject: int | str,
    ablations: Sequence[str] = (),
    *,
    limit: int | None = None,
    overwrite: bool = False,
    out: str | Path | None = None,
    seed: int = 0,
    rescale: str = "transductive",
    stage2: Stage2Settings | None = None,
    batch_size: int = 8,
    progress: bool = True,
    pipeline: BrainDiffuserPipeline | None = None,
    protocol: str | Protocol | None = None,
    features: str = "predicted",
) -> Path:
    """Run the pipeline over every test trial of a subject (or the average) and write a bundle.

    Parameters
    ----------
    settings : Settings
    subject : int or str
        Subject number or ``"average"``.
    ablations : sequence of str in {"no_vdvae", "no_text", "no_vision"}, default ()
        Ablation images to store beside ``vdvae`` (only-VDVAE) and ``final``.
    limit : int, optional
        Only the first ``limit`` test trials (features are still predicted from the whole test set).
    overwrite : bool, default False
        Replace an existing bundle of the same name made with other settings or models. A complete bundle with the
        same manifest is up to date and is returned as it is, whatever ``overwrite`` says (delete it to redo it).
    out : path, optional
        Folder receiving the bundle; default ``settings.home / "bundles"``.
    seed : int, default 0
        Run seed; each trial's seed is :func:`~braindiff_app.pipeline.trial_seeds` of (seed, NSD id).
    rescale : str in {"none", "transductive", "train", "norm"}, default "transductive"
        See :func:`~braindiff_app.pipeline.predict_features`.
    stage2 : Stage2Settings, optional
        Stage-2 parameters, written in the manifest's settings. Default: ``Stage2Settings()``, the paper's (50
        DDIM steps); ``braindiff reconstruct`` passes ``Stage2Settings.for_tier(tier)`` with its flags.
    batch_size : int, default 8
        Trials per batch (results do not depend on it).
    progress : bool, default True
        Show a tqdm bar (main process only).
    pipeline : BrainDiffuserPipeline, optional
        Already loaded models (its regressors are used for a single subject when present).
    protocol : str in {"braindiff", "reference"} or Protocol, optional
        Procedural choices (:mod:`braindiff_app.protocol`), recorded in the manifest's settings. Default: the given
        pipeline's, else "braindiff".
    features : str in {"predicted", "true"}, default "predicted"
        "predicted": the subject's regressors read its test fMRI (the paper's reconstructions). "true": the seen
        images' own extracted features (:func:`true_test_features`): the image models' ceiling, in a bundle named
        ``{tier}-subjNN-true-features`` whose manifest records ``settings["features"] = "true"``; no regressor or
        fMRI is read, ``rescale`` does not apply.

    Returns
    -------
    Path
        The finished bundle folder ``out / "{tier}-subj01"`` (or ``-average``, ``-subj01-true-features``).
    """
    from accelerate import PartialState
    from tqdm.auto import tqdm

    check_in_allowed(features, FEATURE_SOURCES, "features")
    true = features == "true"
    if true and rescale != "transductive":
        raise ValueError(f"rescale: re-scales predicted features; with features='true' nothing is predicted, got "
                         f"rescale={rescale!r} (leave it at its default).")
    stage2 = Stage2Settings() if stage2 is None else stage2
    if not isinstance(stage2, Stage2Settings):
        raise TypeError(f"stage2: expected a Stage2Settings, got {type(stage2).__name__}; build one with "
                        "Stage2Settings(...) or Stage2Settings.for_tier(tier).")

    root = Path(out) if out is not None else settings.home / "bundles"
    _check_writable(root)  # before any model work: a read-only home once failed only after 28 s of it
    # One process per GPU under `accelerate launch` (or torchrun); CPU processes need accelerate told so.
    state = PartialState(cpu=resolve_device(settings.device).type == "cpu")
    if true:  # checked before any model is loaded
        test, values, subjects = true_test_features(settings, subject)
    if pipeline is None:
        pipeline = load_pipeline(settings, None if true else subject,
                                 device=state.device if state.num_processes > 1 else None, protocol=protocol)
    elif protocol is not None:
        pipeline.protocol = get_protocol(protocol)
    if not true:
        regressors = pipeline.regressors if str(subject) != "average" and pipeline.regressors else None
        test, values, subjects = predict_test_features(settings, subject, rescale, regressors=regressors)
    n = len(test.trial_ids) if limit is None else min(int(limit), len(test.trial_ids))
    if n < 1:
        raise ValueError(f"limit: expected a positive number of trials, got {limit}.")
    params = stage2.to_json()  # the pipeline's keyword arguments, and the manifest's first settings
    models = model_identities(settings, [] if true else subjects)
    if true:  # the feature files made the images: a re-extraction makes the bundle out of date
        folder = settings.subject_dir("features", subject)
        models["fingerprints"].update({f"features {subject_folder(subject)} {name}_test": files_fingerprint(
            folder / f"{name}_test.npy") for name in FEATURE_NAMES})
    manifest = Manifest(
        name=bundle_name(settings, subject, features),
        subject="average" if str(subject) == "average" else str(int(subject)),
        tier=settings.tier, n_trials=n, kinds=REQUIRED_KINDS + tuple(dict.fromkeys(ablations)),
        # Predicted bundles' settings are key for key what they were before true features could be chosen.
        settings={**params, "mixing": stage2.mixing, "seed": int(seed), **({} if true else {"rescale": rescale}),
                  "vdvae_layers": pipeline.vdvae_layers, "subjects": subjects,
                  **({} if true else {"alphas": _alphas(settings, subjects, regressors)}),
                  "protocol": pipeline.protocol.name, **({"features": "true"} if true else {})},
        models=models, image_size=pipeline.image_size,
    )
    recover_bundle(root, manifest.name)  # a publish killed between its renames is completed or rolled back
    existing = root / manifest.name / "manifest.json"
    if existing.exists():
        try:  # every field checked: a damaged manifest is named, field and file, never a raw parser error
            previous = read_manifest(existing).to_json()
        except BundleError as exc:
            if not overwrite:
                raise BundleError(f"{exc} The bundle there is damaged; pass --overwrite to replace it.") from None
            previous = {}
        wanted = manifest.to_json()
        if previous == wanted:
            return root / manifest.name  # made with the same settings and models: up to date
        if not overwrite:
            changed = manifest_changes(previous, wanted)
            raise FileExistsError(f"{root / manifest.name}: a bundle of this name exists, made with other settings "
                                  f"({'; '.join(changed) or 'another format'}); pass --overwrite to replace it.")
    # The main process creates (or checks) the partial bundle before the others open it.
    writer = BundleWriter(root, manifest, overwrite=overwrite) if state.is_main_process else None
    state.wait_for_everyone()
    writer = writer or BundleWriter(root, manifest, overwrite=overwrite, lock=False)  # the main process holds it
    pending = writer.pending()
    state.wait_for_everyone()  # every process lists the same pending trials before any writes
    with state.split_between_processes(pending) as mine:
        bar = tqdm(total=len(mine), desc=f"reconstruct {manifest.name}", disable=not (progress and
                                                                                      state.is_main_process))
        for start in range(0, len(mine), batch_size):
            rows = np.asarray(mine[start:start + batch_size], dtype=np.int64)
            result = pipeline(features={k: np.asarray(values[k][rows]) for k in FEATURE_NAMES},
                              seeds=trial_seeds(test.trial_ids[rows], seed), ablations=manifest.kinds[3:],
                              batch_size=batch_size, **params)
            for j, i in enumerate(rows):
                images = {"ground_truth": np.asarray(test.images[i]), "vdvae": result.vdvae[j],
                          "final": result.final[j], **{k: v[j] for k, v in result.ablations.items()}}
                writer.write_trial(int(i), int(test.trial_ids[i]), test.captions[i], images)
            bar.update(len(rows))
        bar.close()
    state.wait_for_everyone()
    if state.is_main_process:
        writer.finalize()
    return writer.final_path


def _alphas(settings: Settings, subjects: list[str], regressors) -> dict[str, dict[str, Any]]:
    """Ridge alphas per subject and feature set for the manifest: one value, or min/median/max when chosen per
    target (None where a regressor does not say)."""
    tables: dict[str, dict[str, Any]] = {}
    for s in subjects:
        regs = regressors if regressors is not None else load_regressors(settings, s)
        tables[s] = {}
        for name in FEATURE_NAMES:
            alpha = getattr(regs[name], "alpha_", None)
            alpha = None if alpha is None else np.asarray(alpha, dtype=float).reshape(-1)
            tables[s][name] = (None if alpha is None else float(alpha[0]) if np.all(alpha == alpha[0]) else
                               {"min": float(alpha.min()), "median": float(np.median(alpha)),
                                "max": float(alpha.max())})
    return tables
