"""fit_subject: prepared betas + features -> the three regressor files (dense or low-rank), resumable."""

import numpy as np
import pytest

from braindiff_app.regression import LowRankWeights, load_regressor
from braindiff_app.regression.subject import fit_subject


def _folders(tmp_path, n=30, p=20):
    rng = np.random.default_rng(0)
    prepared, features = tmp_path / "prepared", tmp_path / "features"
    prepared.mkdir()
    features.mkdir()
    np.save(prepared / "fmri_train.npy", rng.normal(0, 300, (n, p)).astype(np.float32))
    np.save(prepared / "fmri_test.npy", rng.normal(0, 300, (8, p)).astype(np.float32))
    (prepared / "meta.json").write_text("{}")  # prepare's completion mark
    for name, shape in {"vdvae": (6,), "clip_vision": (257, 2), "clip_text": (77, 2)}.items():
        np.save(features / f"{name}_train.npy", rng.normal(size=(n, *shape)).astype(np.float32))
    (features / "clip.json").write_text('{"model": "tiny"}')
    return prepared, features


def test_low_rank_and_resume(tmp_path):
    prepared, features = _folders(tmp_path)
    out = tmp_path / "regressors"
    report = fit_subject(prepared, features, out, targets=("clip_text",), low_rank=3, alphas={"clip_text": 5.0})
    entry = report["clip_text"]
    assert entry["status"] == "fitted" and entry["rank"] == 3
    assert 0 < entry["fidelity"]["mean_correlation"] <= 1
    reg = load_regressor(out / "clip_text.safetensors")
    assert isinstance(reg.weights_, LowRankWeights) and reg.weights_.rank == 3
    assert reg.metadata["features_metadata"] == '{"model": "tiny"}' and reg.metadata["alpha"] == "5.0"
    assert not list(out.glob(".*"))  # scratch weights removed
    again = fit_subject(prepared, features, out, targets=("clip_text",), alphas={"clip_text": 5.0})
    assert again["clip_text"]["status"] == "exists"
    refit = fit_subject(prepared, features, out, targets=("clip_text",), alphas={"clip_text": 5.0}, overwrite=True)
    assert refit["clip_text"]["status"] == "fitted"
    assert isinstance(load_regressor(out / "clip_text.safetensors").weights_, np.memmap)
    # Another alpha is never served by the saved file: the resumed fit refits, and says so.
    lines = []
    other = fit_subject(prepared, features, out, targets=("clip_text",), log=lines.append)  # the paper's 100000
    assert other["clip_text"]["status"] == "fitted" and other["clip_text"]["alpha"] == 100000.0
    assert load_regressor(out / "clip_text.safetensors").metadata["alpha"] == "100000.0"
    assert "was fitted with alpha 5, 100000 is asked: refitting" in lines[0]
    assert fit_subject(prepared, features, out, targets=("clip_text",))["clip_text"]["status"] == "exists"


def test_errors(tmp_path):
    prepared, features = _folders(tmp_path)
    with pytest.raises(ValueError, match="targets: expected names among vdvae"):
        fit_subject(prepared, features, tmp_path / "out", targets=("clip",))
    np.save(features / "vdvae_train.npy", np.zeros((5, 6), np.float32))
    with pytest.raises(ValueError, match="vdvae_train.npy: 5 rows, but .*fmri_train.npy has 30 trials"):
        fit_subject(prepared, features, tmp_path / "out", targets=("vdvae",))
    with pytest.raises(FileNotFoundError, match="fmri_train.npy: missing; prepare the subject first"):
        fit_subject(tmp_path / "nowhere", features, tmp_path / "out")


def test_refuses_a_half_prepared_subject(tmp_path):
    """fmri_*.npy without meta.json: prepare stopped at the stimuli or captions stage."""
    prepared, features = _folders(tmp_path)
    (prepared / "meta.json").unlink()
    with pytest.raises(FileNotFoundError, match="meta.json: not found.*rerun `braindiff prepare`"):
        fit_subject(prepared, features, tmp_path / "out", targets=("vdvae",))


def test_refuses_nan_or_inf_in_its_inputs_and_saves_nothing(tmp_path):
    # A single NaN in the betas used to be fitted, saved as an all-NaN regressor and reported "fitted".
    prepared, features = _folders(tmp_path)
    fmri = np.load(prepared / "fmri_train.npy")
    fmri[3, 5] = np.nan
    np.save(prepared / "fmri_train.npy", fmri)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"fmri_train\.npy: row 3 holds NaN or infinite values"):
        fit_subject(prepared, features, out, targets=("vdvae",))
    (tmp_path / "b").mkdir()
    prepared, features = _folders(tmp_path / "b")
    text = np.load(features / "clip_text_train.npy")
    text[11, 40, 1] = np.inf
    np.save(features / "clip_text_train.npy", text)
    with pytest.raises(ValueError, match=r"clip_text_train\.npy: row 11 holds NaN or infinite values"):
        fit_subject(prepared, features, out, targets=("clip_text",))
    assert not out.exists() or not list(out.iterdir())  # no regressor, no scratch file


def test_a_rank_out_of_range_is_refused_before_fitting_and_no_scratch_stays(tmp_path, monkeypatch):
    from braindiff_app.regression import subject

    prepared, features = _folders(tmp_path)
    out = tmp_path / "out"
    fitted = []
    monkeypatch.setattr(subject, "_fit_one", lambda *a, **k: fitted.append(a) or {})
    for rank in (0, 3 + 20):  # clip_text: 77 x 2 = 154 targets, 20 voxels
        with pytest.raises(ValueError, match=r"low_rank \(clip_text\): expected 1 <= rank <= 20 \(the smaller of 20 "
                                             rf"voxels and 154 targets\), got {rank}"):
            subject.fit_subject(prepared, features, out, targets=("clip_text",), low_rank=rank)
    with pytest.raises(ValueError, match=r"low_rank \(vdvae\): expected 1 <= rank <= 6 "):  # vdvae: 6 targets
        subject.fit_subject(prepared, features, out, targets=("clip_text", "vdvae"), low_rank=7)  # the 2nd target
    assert fitted == []  # refused before the dense fit, not after it
    monkeypatch.undo()

    def interrupted(*args, **kwargs):
        np.lib.format.open_memmap(args[3], mode="w+", dtype=np.float32, shape=(20, 154))
        raise KeyboardInterrupt

    monkeypatch.setattr(subject, "_fit_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        subject.fit_subject(prepared, features, out, targets=("clip_text",))
    assert list(out.iterdir()) == []  # the scratch weights are removed on the way out
