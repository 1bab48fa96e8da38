import json

import numpy as np
import pytest

from braindiff_app.cli import main
from tests.models.conftest import _make_vd_folder


@pytest.fixture(scope="module")
def tiny_vd(tmp_path_factory):
    return _make_vd_folder(tmp_path_factory.mktemp("cli_vd") / "vd")


def _prepare(home, n_train=3, n_test=2):
    prepared = home / "real" / "prepared" / "subj01"
    prepared.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        np.save(prepared / f"images_{split}.npy", rng.integers(0, 256, (n, 20, 20, 3), dtype=np.uint8))
        (prepared / f"captions_{split}.json").write_text(json.dumps([["a red ball", "a ball"]] * n))


def test_extract_clip_writes_contract_3_files(tmp_path, tiny_vd, capsys):
    import transformers

    _prepare(tmp_path)
    assert main(["extract", "clip", "--subject", "1", "--home", str(tmp_path), "--tier", "real",
                 "--vd-dir", str(tiny_vd),
                 "--device", "cpu"]) == 0
    features = tmp_path / "real" / "features" / "subj01"
    assert np.load(features / "clip_vision_train.npy").shape == (3, 257, 16)
    assert np.load(features / "clip_text_test.npy").shape == (2, 77, 16)
    assert np.load(features / "clip_vision_test.npy").dtype == np.float32
    meta = json.loads((features / "clip.json").read_text())
    assert meta["transformers"] == transformers.__version__ and meta["clip_dim"] == 16
    assert meta["dtype"] == "float32"  # regression targets stay float32 unless --dtype asks otherwise
    assert not list(features.glob("*.tmp"))


def test_extract_clip_reuses_only_features_of_the_same_model_and_versions(tmp_path, tiny_vd, capsys):
    _prepare(tmp_path)
    args = ["extract", "clip", "--subject", "1", "--home", str(tmp_path), "--tier", "real",
                 "--vd-dir", str(tiny_vd), "--device", "cpu"]
    assert main(args) == 0
    features = tmp_path / "real" / "features" / "subj01"
    first = np.load(features / "clip_vision_test.npy")
    np.save(features / "clip_vision_test.npy", np.zeros_like(first))  # a marker: reused files keep it
    capsys.readouterr()
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out and not np.load(features / "clip_vision_test.npy").any()
    # Features recorded as made by another transformers version are recomputed, and the record is corrected.
    meta = json.loads((features / "clip.json").read_text())
    (features / "clip.json").write_text(json.dumps({**meta, "transformers": "4.19.0"}))
    assert main(args) == 0
    np.testing.assert_allclose(np.load(features / "clip_vision_test.npy"), first, rtol=1e-5, atol=1e-6)
    assert json.loads((features / "clip.json").read_text())["transformers"] == meta["transformers"]
    # Retrained weights at the same path (another fingerprint) are not reused either.
    np.save(features / "clip_vision_test.npy", np.zeros_like(first))
    (features / "clip.json").write_text(json.dumps({**meta, "model_fingerprint": "0" * 16}))
    assert main(args) == 0
    np.testing.assert_allclose(np.load(features / "clip_vision_test.npy"), first, rtol=1e-5, atol=1e-6)
    np.save(features / "clip_vision_test.npy", np.zeros_like(first))
    assert main([*args, "--overwrite"]) == 0
    np.testing.assert_allclose(np.load(features / "clip_vision_test.npy"), first, rtol=1e-5, atol=1e-6)


def test_extract_clip_without_prepared_subject_is_one_line(tmp_path, tiny_vd, capsys):
    assert main(["extract", "clip", "--subject", "1", "--home", str(tmp_path), "--tier", "real",
                 "--vd-dir", str(tiny_vd)]) == 1
    assert "braindiff prepare --subject 1" in capsys.readouterr().err
