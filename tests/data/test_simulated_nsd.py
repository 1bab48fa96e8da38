import csv
import json

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy.io import loadmat

from braindiff_app.data import nsd_layout
from braindiff_app.demo.anatomy import load_anatomy
from braindiff_app.demo.simulate import (
    CATEGORIES,
    SURFACE_CHANNELS,
    eccentricity_rois,
    make_voxel_model,
    noise_ceiling,
    select_voxels,
    simulate_trials,
    stimulus_features,
    voxel_drive,
)
from braindiff_app.demo.simulated_nsd import build_simulated_nsd, choose_trials_per_session, simulation_dir
from braindiff_app.demo.stimuli import Scene, SceneObject, make_scene, render_scene, scene_captions

N_TEST, N_TRAIN, REPS, T = 12, 24, 3, 36


def _build(root, subjects=(1, 2), seed=0):
    return build_simulated_nsd(root, seed=seed, n_test=N_TEST, n_train=N_TRAIN, n_reps=REPS, trials_per_session=T,
                               image_size=64, subjects=subjects)


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsd")
    return root, _build(root)


def test_layout_and_shapes(nsd):
    root, summary = nsd
    anatomy = load_anatomy()
    design = loadmat(nsd_layout.expdesign_path(root))
    order = design["masterordering"].ravel().astype(int)
    subjectim = design["subjectim"].astype(int)
    shared = design["sharedix"].ravel().astype(int)
    assert order.shape == (REPS * (N_TEST + N_TRAIN),) and subjectim.shape == (8, 10000)
    # Every used position appears REPS times; test positions are <= 1000.
    positions, counts = np.unique(order, return_counts=True)
    assert (counts == REPS).all() and len(positions) == N_TEST + N_TRAIN
    assert (order <= 1000).sum() == REPS * N_TEST
    # Shared test images, own training images.
    for s in (1, 2, 5, 7):
        np.testing.assert_array_equal(subjectim[s - 1, :N_TEST], shared)
    train1, train2 = subjectim[0, 1000:1000 + N_TRAIN], subjectim[1, 1000:1000 + N_TRAIN]
    assert not set(train1) & set(train2) and not set(train1) & set(shared)
    n_images = N_TEST + 4 * N_TRAIN
    assert subjectim.min() >= 1 and subjectim.max() <= n_images
    with h5py.File(nsd_layout.stimuli_path(root), "r") as fh:
        assert fh["imgBrick"].shape == (n_images, 64, 64, 3) and fh["imgBrick"].dtype == np.uint8
        # NSD id i is scene i of the world seed.
        np.testing.assert_array_equal(fh["imgBrick"][N_TEST + 3], render_scene(make_scene(0, N_TEST + 3), 64))
    n_sessions = REPS * (N_TEST + N_TRAIN) // T
    for s in (1, 2):
        for session in range(1, n_sessions + 1):
            img = nib.load(nsd_layout.betas_path(root, s, session))
            assert img.shape == (*anatomy.shape, T) and img.get_data_dtype() == np.int16
            np.testing.assert_allclose(img.affine, anatomy.affine, atol=1e-5)
        assert not nsd_layout.betas_path(root, s, n_sessions + 1).exists()
    assert not nsd_layout.betas_dir(root, 5).exists()
    # Captions: 5 per image, in the split the stim-info CSV names.
    with open(nsd_layout.stim_info_path(root), newline="") as fh:
        info = list(csv.DictReader(fh))
    assert [int(r["nsdId"]) for r in info] == list(range(n_images))
    for split in nsd_layout.COCO_SPLITS:
        doc = json.loads(nsd_layout.captions_path(root, split).read_text())
        ids = [a["image_id"] for a in doc["annotations"]]
        expected = [int(r["cocoId"]) for r in info if r["cocoSplit"] == split]
        assert sorted(set(ids)) == sorted(expected) and len(ids) == 5 * len(expected)
        if split == "val2017":  # the shared images: their captions are written from their scenes
            first = [a["caption"] for a in doc["annotations"] if a["image_id"] == int(info[0]["cocoId"])]
            assert first == scene_captions(make_scene(0, int(info[0]["nsdId"])))
    assert (simulation_dir(root) / "simulation.json").exists()
    assert summary["n_sessions"] == n_sessions


def test_roi_files(nsd):
    root, _ = nsd
    general = np.asarray(nib.load(nsd_layout.roi_path(root, 1, "nsdgeneral")).dataobj)
    assert set(np.unique(general)) == {-1, 0, 1}
    taken = np.zeros(general.shape, int)
    for name in ("prf-visualrois", "floc-faces", "floc-places", "floc-bodies", "floc-words"):
        roi = np.asarray(nib.load(nsd_layout.roi_path(root, 1, name)).dataobj)
        assert not ((roi > 0) & (general != 1)).any(), name
        taken += roi > 0
    assert taken.max() == 1
    ecc = np.asarray(nib.load(nsd_layout.roi_path(root, 1, "prf-eccrois")).dataobj)
    visual = np.asarray(nib.load(nsd_layout.roi_path(root, 1, "prf-visualrois")).dataobj)
    assert set(np.unique(ecc)) == {0, 1, 2, 3, 4, 5}
    assert not ((ecc > 0) & (visual == 0)).any()


def test_betas_are_simulated_only_in_the_mask(nsd):
    root, _ = nsd
    general = np.asarray(nib.load(nsd_layout.roi_path(root, 2, "nsdgeneral")).dataobj) == 1
    betas = np.asarray(nib.load(nsd_layout.betas_path(root, 2, 1)).dataobj)
    assert (betas[~general] == 0).all()
    inside = betas[general].astype(float) / 300
    assert 0.8 < inside.std() < 4  # percent signal change, NSD-like spread
    assert np.mean(inside == 0) < 0.01


def test_same_seed_same_data_and_resume(nsd, tmp_path):
    root, summary = nsd
    again = _build(tmp_path, subjects=(2,))
    a = np.asarray(nib.load(nsd_layout.betas_path(root, 2, 2)).dataobj)
    b = np.asarray(nib.load(nsd_layout.betas_path(tmp_path, 2, 2)).dataobj)
    np.testing.assert_array_equal(a, b)
    assert again["subjects"]["2"] == summary["subjects"]["2"]
    with h5py.File(nsd_layout.stimuli_path(root)) as f1, h5py.File(nsd_layout.stimuli_path(tmp_path)) as f2:
        np.testing.assert_array_equal(f1["imgBrick"][:5], f2["imgBrick"][:5])
    # Rerun in the same folder: resumes (files kept), same answer; other parameters are refused.
    assert _build(tmp_path, subjects=(2,))["subjects"] == again["subjects"]
    with pytest.raises(ValueError, match="other parameters"):
        _build(tmp_path, subjects=(2,), seed=1)


def test_subjects_differ(nsd):
    root, summary = nsd
    a = np.asarray(nib.load(nsd_layout.betas_path(root, 1, 1)).dataobj)
    b = np.asarray(nib.load(nsd_layout.betas_path(root, 2, 1)).dataobj)
    assert not np.array_equal(a, b)


@pytest.fixture(scope="module")
def model():
    anatomy = load_anatomy()
    images, labels = zip(*(render_scene(_scene(kind, x, y, 0.3), 128, labels=True)
                           for kind in ("face", "ball", "building") for x in (0.2, 0.5, 0.8) for y in (0.3, 0.7)),
                         strict=True)
    return make_voxel_model(anatomy, stimulus_features(np.stack(images), np.stack(labels)), seed=3)


def _scene(kind, x, y, size):
    return Scene(0, 0, "plain", "grey", (SceneObject(kind, x, y, size, "white"),))


def _features(*scenes):
    images, labels = zip(*(render_scene(s, 128, labels=True) for s in scenes), strict=True)
    return stimulus_features(np.stack(images), np.stack(labels))


def _image_xy(x_deg, y_deg):
    # Visual field (deg, y up) -> image fractions (y down); the image spans 8.4 deg.
    return 0.5 + x_deg / 8.4, 0.5 - y_deg / 8.4


def test_response_rises_when_prf_is_stimulated(model):
    early = np.flatnonzero((model.kind == 1) & (model.eccentricity > 1.5) & (model.eccentricity < 3))[::7][:12]
    scenes = []
    for v in early:
        x, y = _image_xy(model.x[v], model.y[v])
        scenes += [_scene("ball", x, y, 0.15), _scene("ball", 1 - x, 1 - y, 0.15)]  # in the pRF / opposite
    drive = voxel_drive(select_voxels(model, early), _features(*scenes))  # (2 * n, n)
    n = len(early)
    inside, outside = drive[0::2][np.arange(n), np.arange(n)], drive[1::2][np.arange(n), np.arange(n)]
    assert (inside > outside + 0.1).all(), (inside, outside)


def test_category_voxels_prefer_their_category(model):
    for kind, category, obj in ((4, "faces", "face"), (5, "places", "building"), (6, "bodies", "body")):
        voxels = np.flatnonzero(model.kind == kind)
        assert model.category_weight[voxels, CATEGORIES.index(category)].min() == 1
        voxels = voxels[:: max(1, len(voxels) // 12)]
        scenes = []
        for v in voxels:
            x, y = np.clip(_image_xy(model.x[v], model.y[v]), 0.2, 0.8)
            scenes += [_scene(obj, x, y, 0.4), _scene("ball", x, y, 0.4)]
        drive = voxel_drive(select_voxels(model, voxels), _features(*scenes))
        n = len(voxels)
        preferred, other = drive[0::2][np.arange(n), np.arange(n)], drive[1::2][np.arange(n), np.arange(n)]
        assert np.mean(preferred > other) > 0.8, category


def test_surface_voxels_see_the_backdrop_colour(model):
    """Two flat backdrops (no contrast energy anywhere) of different hue: voxels that
    weight red over green respond more to the red one; category voxels see no colour at all."""
    red, green = (Scene(0, 0, "plain", colour, ()) for colour in ("red", "green"))
    features = _features(red, green)
    r, g = SURFACE_CHANNELS.index("red"), SURFACE_CHANNELS.index("green")
    assert features.surface[0, r].mean() > 0.5 and features.surface[0, g].max() == 0
    assert features.surface[1, g].mean() > 0.3 and features.surface[1, r].max() == 0
    np.testing.assert_allclose(features.energy[0], features.energy[1], atol=1e-6)  # flat fields: no contrast
    assert (model.surface_weight[model.kind >= 4] == 0).all()
    weights = model.surface_weight
    red_lovers = np.flatnonzero((weights[:, r] > weights[:, g] + 0.5) & (model.eccentricity < 3))
    green_lovers = np.flatnonzero((weights[:, g] > weights[:, r] + 0.5) & (model.eccentricity < 3))
    assert len(red_lovers) > 20 and len(green_lovers) > 20
    drive = voxel_drive(model, features)
    assert np.mean(drive[0, red_lovers] > drive[1, red_lovers]) > 0.95
    assert np.mean(drive[1, green_lovers] > drive[0, green_lovers]) > 0.95


def test_built_subjects_reach_an_nsd_like_reliability(nsd):
    """On the written data: the measured noise ceiling matches the encoding model's truth, region by region."""
    _, summary = nsd
    for subject in ("1", "2"):
        kinds = summary["subjects"][subject]["kinds"]
        for roi in ("V1", "V2", "V3", "faces", "places", "bodies"):
            measured, true = kinds[roi]["median_ncsnr"], kinds[roi]["median_true_ncsnr"]
            assert 0.3 < true < 0.8, (subject, roi, true)  # NSD-like: noise ceilings of roughly 20-65 %
            assert abs(measured - true) < 0.2 * true, (subject, roi, measured, true)
            assert 20 < kinds[roi]["median_nc"] < 65
        # Voxels outside the ROIs are driven weakly: far less reliable than any ROI.
        assert kinds["other"]["median_true_ncsnr"] < 0.5 * min(kinds[r]["median_true_ncsnr"] for r in ("V1", "faces"))


def test_repetitions_reach_the_requested_reliability():
    rng = np.random.default_rng(0)
    n_images, n_vox = 1500, 40
    true_ncsnr = np.linspace(0.1, 1.0, n_vox)
    noise_sd = np.full(n_vox, 2.0, np.float32)
    signal = rng.normal(0, 1, (n_images, n_vox)) * true_ncsnr * noise_sd
    loadings = rng.normal(0, 1, (4, n_vox))
    loadings *= np.sqrt(0.3) * noise_sd / np.linalg.norm(loadings, axis=0)
    voxels = _fake_model(noise_sd, loadings.astype(np.float32))
    reps = np.stack([simulate_trials(voxels, signal.astype(np.float32), rng) for _ in range(3)], axis=1)
    difference = reps[:, 0] - reps[:, 1]
    np.testing.assert_allclose(difference.std(axis=0), np.sqrt(2) * noise_sd, rtol=0.1)
    ncsnr, nc = noise_ceiling(reps)
    np.testing.assert_allclose(ncsnr, true_ncsnr, atol=0.07)
    np.testing.assert_allclose(nc, 100 * true_ncsnr**2 / (true_ncsnr**2 + 1 / 3), atol=6)
    # Shared noise: repetition differences correlate across voxels.
    corr = np.corrcoef(difference.T)[np.triu_indices(n_vox, 1)]
    assert 0.02 < np.abs(corr).mean() < 0.5


def _fake_model(noise_sd, loadings):
    from braindiff_app.demo.simulate import VoxelModel

    n = len(noise_sd)
    zeros = np.zeros(n, np.float32)
    return VoxelModel(np.zeros((n, 3), np.int64), np.ones(n, np.int8), zeros, zeros, zeros + 1, zeros.astype(np.int8),
                      zeros, np.zeros((n, len(CATEGORIES)), np.float32),
                      np.zeros((n, len(SURFACE_CHANNELS)), np.float32), zeros + 1, noise_sd, zeros, loadings,
                      zeros, zeros + 1)


def test_eccentricity_rois_follow_prfs(model):
    labels = eccentricity_rois(model)
    early = (model.kind >= 1) & (model.kind <= 3)
    assert (labels[~early] == 0).all() and (labels[early] > 0).all()
    assert model.eccentricity[labels == 1].max() < 0.5 and model.eccentricity[labels == 5].min() > 4


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="trials_per_session: expected a divisor"):
        build_simulated_nsd(tmp_path, n_test=10, n_train=10, trials_per_session=7)
    with pytest.raises(ValueError, match="subjects: expected a non-empty subset"):
        build_simulated_nsd(tmp_path, subjects=(3,))
    with pytest.raises(ValueError, match="n_reps: expected at least 2"):
        build_simulated_nsd(tmp_path, n_reps=1)
    with pytest.raises(ValueError, match="betas: expected shape"):
        noise_ceiling(np.zeros((4, 1, 3)))
    assert choose_trials_per_session(4800) == 600


def test_a_simulation_of_an_older_encoding_model_is_refused_not_mixed(nsd, tmp_path):
    """Voxels saved without the surface-colour weights, and a folder whose parameters predate the colour term:
    each refused with a message naming the file, never loaded or resumed as if current."""
    from dataclasses import asdict

    from braindiff_app.demo.simulate import load_voxel_model

    root, _ = nsd
    model = load_voxel_model(simulation_dir(root) / "subj01_voxels.npz")
    assert model.surface_weight.shape == (model.n_voxels, len(SURFACE_CHANNELS))
    old = {k: v for k, v in asdict(model).items() if k != "surface_weight"}
    np.savez(tmp_path / "old_voxels.npz", **old)
    with pytest.raises(ValueError, match=r"old_voxels\.npz: simulated voxels without surface_weight.*demo simulate"):
        load_voxel_model(tmp_path / "old_voxels.npz")

    older = tmp_path / "older_nsd"
    params_path = simulation_dir(older) / "parameters.json"
    params_path.parent.mkdir(parents=True)
    params_path.write_text(json.dumps({"seed": 0, "n_test": N_TEST, "n_train": N_TRAIN, "n_reps": REPS,
                                       "trials_per_session": T, "image_size": 64}))
    with pytest.raises(ValueError, match="parameters.json: this folder holds a simulation with other parameters"):
        _build(older)
    assert not (simulation_dir(older) / "subj01_voxels.npz").exists()


def test_cli_reports_bad_sizes_in_one_line(tmp_path, capsys):
    from braindiff_app.cli import main

    code = main(["demo", "simulate", "--out", str(tmp_path), "--n-test", "10", "--n-train", "10",
                 "--trials-per-session", "7"])
    assert code == 1
    assert "trials_per_session: expected a divisor" in capsys.readouterr().err
    # A bad image size is refused before parameters.json records it: the corrected rerun is not refused.
    out = tmp_path / "sized"
    assert main(["demo", "simulate", "--out", str(out), "--n-test", "5", "--n-train", "10", "--image-size", "3"]) == 1
    assert "image_size: expected an image side of at least 8 pixels, got 3" in capsys.readouterr().err
    assert not (simulation_dir(out) / "parameters.json").exists()
