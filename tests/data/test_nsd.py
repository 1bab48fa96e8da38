"""NSD reader on a tiny generated NSD folder: split, averaging, masking, stimuli, captions, errors, resume."""

import json

import numpy as np
import pytest

from braindiff_app.data import nsd
from braindiff_app.data import nsd_layout as L


def _expected(tiny, sessions):
    T = tiny.betas[1].shape[3]
    trials = np.concatenate([np.arange((s - 1) * T, s * T) for s in sessions])
    betas = np.concatenate([tiny.betas[s][tiny.mask].T for s in sessions]).astype(np.float64)
    order = []
    for t in trials:
        if tiny.trial_ids[t] not in order:
            order.append(int(tiny.trial_ids[t]))
    means = {i: betas[tiny.trial_ids[trials] == i].mean(0) for i in order}
    reps = {i: int((tiny.trial_ids[trials] == i).sum()) for i in order}
    return order, means, reps


def test_prepare_split_average_mask_images_captions(tiny_nsd, tmp_path):
    out = tmp_path / "prepared"
    result = nsd.prepare_subject(tiny_nsd.root, 1, out, progress=False)
    order, means, reps = _expected(tiny_nsd, [1, 2, 3])
    test_ids = [i for i in order if i in tiny_nsd.shared_ids]
    train_ids = [i for i in order if i not in tiny_nsd.shared_ids]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["nsd_ids_test"] == test_ids and meta["nsd_ids_train"] == train_ids
    assert (result.n_train, result.n_test) == (len(train_ids), len(test_ids))
    assert meta["repetitions_train"] == [reps[i] for i in train_ids] and meta["trials_per_session"] == 10
    assert meta["n_voxels"] == int(tiny_nsd.mask.sum()) == result.n_voxels
    fmri = np.load(out / "fmri_train.npy")
    assert fmri.dtype == np.float32 and fmri.shape == (len(train_ids), tiny_nsd.mask.sum())
    np.testing.assert_allclose(fmri, np.stack([means[i] for i in train_ids]), rtol=1e-6)
    np.testing.assert_allclose(np.load(out / "fmri_test.npy"), np.stack([means[i] for i in test_ids]), rtol=1e-6)
    np.testing.assert_array_equal(np.load(out / "voxel_ijk.npy"), np.argwhere(tiny_nsd.mask))
    images = np.load(out / "images_test.npy")
    assert images.dtype == np.uint8 and images.shape == (len(test_ids), 6, 6, 3)
    np.testing.assert_array_equal(images, tiny_nsd.images[test_ids])
    np.testing.assert_array_equal(np.load(out / "images_train.npy"), tiny_nsd.images[train_ids])
    captions = json.loads((out / "captions_train.json").read_text())
    assert captions == [tiny_nsd.captions[i][:5] for i in train_ids]
    assert not (out / ".partial").exists()
    # A second run finds the subject complete and rewrites nothing.
    stamp = (out / "fmri_train.npy").stat().st_mtime_ns
    nsd.prepare_subject(tiny_nsd.root, 1, out, progress=False)
    assert (out / "fmri_train.npy").stat().st_mtime_ns == stamp
    # A damaged completion mark (an interrupted copy): the rerun prepares again instead of failing on its JSON.
    with open(out / "meta.json", "r+b") as f:
        f.truncate(30)
    nsd.prepare_subject(tiny_nsd.root, 1, out, progress=False)
    assert json.loads((out / "meta.json").read_text()) == meta


def test_sessions_subset(tiny_nsd, tmp_path):
    out = tmp_path / "prepared"
    nsd.prepare_subject(tiny_nsd.root, 1, out, sessions=[2], progress=False)
    order, means, _ = _expected(tiny_nsd, [2])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sessions"] == [2] and sorted(meta["nsd_ids_train"] + meta["nsd_ids_test"]) == sorted(order)
    ids = meta["nsd_ids_train"]
    np.testing.assert_allclose(np.load(out / "fmri_train.npy"), np.stack([means[i] for i in ids]), rtol=1e-6)


def test_killed_run_resumes_to_the_same_files(tiny_nsd, tmp_path, monkeypatch):
    fresh, resumed = tmp_path / "fresh", tmp_path / "resumed"
    nsd.prepare_subject(tiny_nsd.root, 1, fresh, progress=False)
    real_read, calls = nsd.read_session, []

    def dies_on_third(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while reading session 3
        return real_read(*args, **kwargs)

    monkeypatch.setattr(nsd, "read_session", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        nsd.prepare_subject(tiny_nsd.root, 1, resumed, progress=False)
    assert not (resumed / "meta.json").exists()
    monkeypatch.setattr(nsd, "read_session", real_read)
    result = nsd.prepare_subject(tiny_nsd.root, 1, resumed, progress=False)
    assert result.resumed_sessions == 2
    for name in nsd.PREPARED_FILES:
        assert (resumed / name).read_bytes() == (fresh / name).read_bytes(), name


def test_sigkilled_process_resumes_to_the_same_files(tiny_nsd, tmp_path):
    """A real kill (SIGKILL, no clean-up runs) in the middle of the session loop, then a rerun."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time
    from pathlib import Path

    fresh, killed = tmp_path / "fresh", tmp_path / "killed"
    nsd.prepare_subject(tiny_nsd.root, 1, fresh, progress=False)
    # The child reads each session slowly (1 s), so the kill lands while it works, not after it finished.
    script = textwrap.dedent(f"""
        import time
        from braindiff_app.data import nsd
        read = nsd.read_session
        def slow(*args, **kwargs):
            time.sleep(1)
            return read(*args, **kwargs)
        nsd.read_session = slow
        nsd.prepare_subject({str(tiny_nsd.root)!r}, 1, {str(killed)!r}, progress=False)
    """)
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", script], cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    first = killed / ".partial" / "session01.npy"
    deadline = time.monotonic() + 120
    while not first.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.exists(), "the child wrote no session"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not (killed / "meta.json").exists()  # never shown as complete
    result = nsd.prepare_subject(tiny_nsd.root, 1, killed, progress=False)
    assert 1 <= result.resumed_sessions < 3
    for name in nsd.PREPARED_FILES:
        assert (killed / name).read_bytes() == (fresh / name).read_bytes(), name
    assert not (killed / ".partial").exists()


@pytest.mark.parametrize("remove, match", [
    (lambda r: L.expdesign_path(r), r"nsd_expdesign.mat not found: .* <nsd-root>/nsddata/experiments/nsd/"),
    (lambda r: L.roi_path(r, 1, "nsdgeneral"), r"nsdgeneral.nii.gz not found: .*func1pt8mm/roi/"),
    (lambda r: L.stimuli_path(r), r"nsd_stimuli.hdf5 not found: .*nsddata_stimuli/stimuli/nsd/"),
    (lambda r: L.stim_info_path(r), r"nsd_stim_info_merged.csv not found"),
    (lambda r: L.captions_path(r, "val2017"), r"captions_val2017.json not found: .*annotations/"),
    (lambda r: [L.betas_path(r, 1, s) for s in (1, 2, 3)],
     r"betas_session01.nii.gz not found: .*betas_fithrf_GLMdenoise_RR/"),
])
def test_each_missing_file_is_named(tiny_nsd, tmp_path, remove, match):
    paths = remove(tiny_nsd.root)
    for path in paths if isinstance(paths, list) else [paths]:
        path.unlink()
    with pytest.raises(FileNotFoundError, match=match):
        nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "out", progress=False)


def test_missing_requested_session_and_root(tiny_nsd, tmp_path):
    with pytest.raises(FileNotFoundError, match="betas_session05.nii.gz not found"):
        nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "out", sessions=[1, 5], progress=False)
    with pytest.raises(FileNotFoundError, match="no such folder; pass --nsd-root"):
        nsd.prepare_subject(tmp_path / "nowhere", 1, tmp_path / "out", progress=False)


def test_malformed_files(tiny_nsd, tmp_path):
    L.write_betas(tiny_nsd.root, 1, 2, np.zeros((5, 4, 2, 10), np.int16))
    with pytest.raises(ValueError, match=r"betas_session02.nii.gz: expected a 4D array \(5, 4, 3, 'n_trials'\)"):
        nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "out", progress=False)
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((5, 4, 3, 10), np.float32), np.eye(4)), L.betas_path(tiny_nsd.root, 1, 2))
    with pytest.raises(ValueError, match="betas_session02.nii.gz: expected int16 betas"):
        nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "out", progress=False)
    L.expdesign_path(tiny_nsd.root).write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="nsd_expdesign.mat: not a readable MATLAB file"):
        nsd.read_expdesign(tiny_nsd.root)
    L.stim_info_path(tiny_nsd.root).write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks column"):
        nsd._read_stim_info(tiny_nsd.root)


def test_doctor_lists_the_files_the_reader_needs(tiny_nsd):
    from braindiff_app.config import load_settings
    from braindiff_app.doctor import diagnose

    def nsd_feature(root):
        settings = load_settings(tier="real", nsd_root=root, home=root.parent / "home")
        return next(f for f in diagnose(settings) if f.name == "NSD preparation")

    assert nsd_feature(tiny_nsd.root).usable
    L.captions_path(tiny_nsd.root, "val2017").unlink()
    feature = nsd_feature(tiny_nsd.root)
    assert not feature.usable
    assert [a.path.name for a in feature.assets if not a.found] == ["captions_val2017.json"]


def test_reads_the_demo_tiers_simulated_nsd(tmp_path):
    from braindiff_app.demo.simulated_nsd import build_simulated_nsd

    build_simulated_nsd(tmp_path / "nsd", seed=0, n_test=12, n_train=24, n_reps=3, trials_per_session=36,
                        image_size=64, subjects=(1,))
    result = nsd.prepare_subject(tmp_path / "nsd", 1, tmp_path / "prepared", progress=False)
    assert (result.n_train, result.n_test, result.sessions) == (24, 12, (1, 2, 3))
    meta = json.loads((tmp_path / "prepared" / "meta.json").read_text())
    assert sorted(meta["nsd_ids_test"]) == list(range(12))  # the simulation's shared ids
    assert set(meta["repetitions_train"] + meta["repetitions_test"]) == {3}
    assert result.n_voxels == int(nsd.read_mask(tmp_path / "nsd", 1).sum())
    assert np.load(tmp_path / "prepared" / "images_test.npy").shape == (12, 64, 64, 3)


def test_prepare_writes_ncsnr_at_the_prepared_voxels(tiny_nsd, tmp_path):
    import nibabel as nib

    out = tmp_path / "out"
    result = nsd.prepare_subject(tiny_nsd.root, 1, out, progress=False)
    assert result.notes == ()
    ijk = np.load(out / "voxel_ijk.npy")
    volume = np.asarray(nib.load(tiny_nsd.root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm"
                                 / "betas_fithrf_GLMdenoise_RR" / "ncsnr.nii.gz").dataobj)  # read independently
    written = np.load(out / "ncsnr.npy")
    assert written.dtype == np.float32 and written.shape == (len(ijk),) == (int(tiny_nsd.mask.sum()),)
    np.testing.assert_array_equal(written, [volume[i, j, k] for i, j, k in ijk])
    np.testing.assert_array_equal(written, tiny_nsd.ncsnr[tiny_nsd.mask])
    # a complete subject prepared before the file arrived gains it on the next run (no re-read of the betas)
    (out / "ncsnr.npy").unlink()
    assert nsd.prepare_subject(tiny_nsd.root, 1, out, progress=False).notes == ()
    np.testing.assert_array_equal(np.load(out / "ncsnr.npy"), written)


def test_prepare_without_ncsnr_notes_it_and_writes_nothing(tmp_path, make_nsd):
    tiny = make_nsd(tmp_path / "nsd", ncsnr=False)
    result = nsd.prepare_subject(tiny.root, 1, tmp_path / "out", progress=False)
    assert len(result.notes) == 1 and "ncsnr.nii.gz" in result.notes[0] and "raw r only" in result.notes[0]
    assert not (tmp_path / "out" / "ncsnr.npy").exists() and (tmp_path / "out" / "meta.json").is_file()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_non_finite_ncsnr_is_refused_naming_the_file(tiny_nsd, tmp_path, bad):
    volume = tiny_nsd.ncsnr.copy()
    volume[tuple(np.argwhere(tiny_nsd.mask)[0])] = bad
    L.write_ncsnr(tiny_nsd.root, 1, volume)
    with pytest.raises(ValueError, match=r"ncsnr\.nii\.gz: 1 of the \d+ nsdgeneral voxels hold NaN"):
        nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "meta.json").exists() and not (tmp_path / "out" / "ncsnr.npy").exists()


def test_ncsnr_of_another_grid_is_refused(tiny_nsd, tmp_path):
    L.write_ncsnr(tiny_nsd.root, 1, np.ones((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"ncsnr\.nii\.gz: expected a 3D volume of shape \(5, 4, 3\)"):
        nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "out", progress=False)
