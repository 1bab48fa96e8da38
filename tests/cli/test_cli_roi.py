"""``braindiff roi`` and ``braindiff reconstruct`` command lines (stand-in models)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import braindiff_app.roi as roi_module
from braindiff_app.cli import main
from braindiff_app.cli.reconstruct import parse_ablations
from braindiff_app.data.atlas import ROIAtlas
from braindiff_app.roi import Recipe, ROIModels
from tests._standins import N_VOXELS, fit_regressors, install_stand_ins, stand_in_pipeline


@pytest.fixture
def models(monkeypatch):
    install_stand_ins(monkeypatch)
    atlas = ROIAtlas("1", N_VOXELS, {"V1": np.array([0, 1]), "faces": np.array([4]), "V2": np.array([2])}, {})
    models = ROIModels(stand_in_pipeline({}), {"1": atlas}, {"1": fit_regressors(1)})
    monkeypatch.setattr(roi_module, "load_roi_models", lambda settings, subjects=None: models)
    return models


def test_roi_cli_writes_images_and_recipe_that_recreates_them(models, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["roi", "--regions", "V1:+1,faces:+1,V2:-1", "--seed", "3", "--home", str(tmp_path),
                 "--out", str(out)]) == 0
    stem = "demo-subj01-V1+1_faces+1_V2-1-seed3"
    final = np.asarray(Image.open(out / f"{stem}_final.png"))
    assert (out / f"{stem}_vdvae.png").exists() and final.shape == (16, 16, 3)
    recipe = Recipe.load(out / f"{stem}_recipe.json")
    assert recipe.regions == {"V1": 1.0, "faces": 1.0, "V2": -1.0} and recipe.seed == 3
    assert recipe.settings["rescale"] == "effect"
    assert main(["roi", "--regions", "faces", "--rescale", "norm", "--home", str(tmp_path), "--out", str(out)]) == 0
    norm = Recipe.load(out / "demo-subj01-faces+1-seed0_recipe.json")
    assert norm.settings["rescale"] == "norm"
    effect = Recipe(subject="1", regions={"faces": 1.0}, settings={"rescale": "effect"})
    assert not np.array_equal(models.features(norm)["clip_vision"], models.features(effect)["clip_vision"])
    np.testing.assert_array_equal(models.generate(recipe).final[0], final)
    again = tmp_path / "again"
    assert main(["roi", "--recipe", str(out / f"{stem}_recipe.json"), "--home", str(tmp_path),
                 "--out", str(again), "--seed", "5", "--steps", "3"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(again / f"{stem}_final.png")), final)
    # the flags a recipe overrides are named, not silently dropped
    assert "--recipe replays the recipe's own subject, seed and settings; ignored: --seed, --steps" in \
        capsys.readouterr().err


def test_roi_cli_reads_the_committed_demo_workspace_when_the_user_has_none(models, tmp_path, monkeypatch, capsys):
    from braindiff_app.config import DEMO_ROI_HOME as DEMO_HOME

    seen = []
    monkeypatch.setattr(roi_module, "load_roi_models", lambda settings, subjects=None: seen.append(settings) or models)
    assert main(["roi", "--regions", "faces:+1", "--home", str(tmp_path)]) == 0
    assert seen[0].home == DEMO_HOME  # the models come from assets/demo/home ...
    assert (tmp_path / "roi" / "demo-subj01-faces+1-seed0_final.png").exists()  # ... the images go to the user's home
    assert "committed demo workspace" in capsys.readouterr().out


def test_roi_cli_bad_input_is_one_line(models, tmp_path, capsys):
    assert main(["roi", "--regions", "V1:x", "--home", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == ("braindiff roi: error: regions: weight of 'V1' must be a finite "
                                               "number like +1 or -0.5, got 'x'.")
    assert main(["roi", "--regions", " ", "--home", str(tmp_path)]) == 1
    assert "empty selection" in capsys.readouterr().err
    # --painted: a file that is no .npy array, or not a 1-D list of voxel indices, is named (numpy's own message
    # advised allow_pickle=True and named no file).
    (tmp_path / "notes.npy").write_text("V1 please")
    np.save(tmp_path / "grid.npy", np.zeros((3, 4), np.int64))
    for name, said in (("notes.npy", "notes.npy: expected one .npy array (numpy.save), got no .npy header."),
                       ("grid.npy", "grid.npy: --painted expects a 1-D array of whole voxel indices (numpy.save of "
                                    "an int array), got shape (3, 4) of int64."),
                       ("none.npy", "none.npy: missing; --painted expects a .npy file of voxel indices.")):
        assert main(["roi", "--regions", "", "--painted", str(tmp_path / name), "--home", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert said in err and "allow_pickle" not in err and "Traceback" not in err


def test_roi_cli_paper_grids(models, tmp_path):
    assert main(["roi", "--paper", "--home", str(tmp_path), "--out", str(tmp_path / "p"), "--steps", "5"]) == 0
    grid5 = np.asarray(Image.open(tmp_path / "p" / "demo-figure5.png"))
    assert grid5.shape == (28 + 2 * 192, 90 + 8 * 192, 3)  # subject 1 + average, 8 ROIs
    assert (tmp_path / "p" / "demo-figure7.png").exists()


def test_parse_ablations():
    assert parse_ablations("all") == ("no_vdvae", "no_text", "no_vision")
    assert parse_ablations("none") == ()
    assert parse_ablations("no_text, no_vdvae,no_text") == ("no_text", "no_vdvae")
    with pytest.raises(ValueError, match="--ablations: expected one of"):
        parse_ablations("no_brain")


def test_roi_cli_ranks_a_best_of_n_recipe_again_and_writes_the_best(tmp_path, capsys):
    """A studio best-of-3 recipe on the committed demo workspace (demo models, the subject's encoder): the CLI writes
    the top-ranked candidate, which is the image its own seed makes alone, and the recipe with the new ranking."""
    from dataclasses import replace

    home, out = tmp_path / "home", tmp_path / "out"
    recipe = Recipe(subject="1", regions={"faces": 1.0}, seed=5,
                    settings={"candidates": 3, "num_inference_steps": 8, "tier": "demo"})
    recipe.save(tmp_path / "studio.json")
    assert main(["roi", "--recipe", str(tmp_path / "studio.json"), "--home", str(home), "--out", str(out)]) == 0
    assert "candidates ranked" in capsys.readouterr().out
    stem = "demo-subj01-faces+1-seed5-best3"
    written = Recipe.load(out / f"{stem}_recipe.json")
    seeds, scores = [s for s, _ in written.ranking], [v for _, v in written.ranking]
    assert sorted(seeds) == [5, 6, 7] and scores == sorted(scores, reverse=True)
    assert written.settings["candidates"] == 3 and written.seed == 5
    best = np.asarray(Image.open(out / f"{stem}_final.png")).astype(int)
    own = replace(written, seed=seeds[0], ranking=(),
                  settings={k: v for k, v in written.settings.items() if k != "candidates"})
    own.save(tmp_path / "own.json")
    assert main(["roi", "--recipe", str(tmp_path / "own.json"), "--home", str(home), "--out", str(out)]) == 0
    alone = np.asarray(Image.open(out / f"demo-subj01-faces+1-seed{seeds[0]}_final.png")).astype(int)
    assert np.abs(best - alone).max() <= 2  # batched vs single: within rounding
    for seed in seeds[1:]:  # and it is not simply another candidate's image
        other = replace(own, seed=seed)
        other.save(tmp_path / f"seed{seed}.json")
        assert main(["roi", "--recipe", str(tmp_path / f"seed{seed}.json"), "--home", str(home), "--out",
                     str(out)]) == 0
        image = np.asarray(Image.open(out / f"demo-subj01-faces+1-seed{seed}_final.png")).astype(int)
        assert np.abs(best - image).mean() > 2


def test_roi_cli_best_of_n_recipe_without_an_encoder_is_one_line(tmp_path, capsys, monkeypatch):
    import braindiff_app.encoding as encoding

    monkeypatch.setattr(encoding, "subjects_with_encoders", lambda settings: [])
    Recipe(subject="1", regions={"faces": 1.0}, settings={"candidates": 4, "tier": "demo"}).save(tmp_path / "r.json")
    out = tmp_path / "out"
    assert main(["roi", "--recipe", str(tmp_path / "r.json"), "--home", str(tmp_path / "home"), "--out",
                 str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("braindiff roi: error: ") and "r.json: a best-of-4 recipe" in err
    assert "braindiff fit-encoder --subject 1" in err and "\n" not in err
    assert not out.exists() or not any(out.iterdir())


def test_a_subject_without_regressors_is_told_to_fit_them(tmp_path):
    # The nsdgeneral mask was blamed (and an API parameter suggested) for a subject that only lacked regressors.
    from braindiff_app.config import load_settings
    from braindiff_app.roi import load_roi_models

    settings = load_settings(tier="demo", home=tmp_path, extra_bundle_dirs=())
    with pytest.raises(FileNotFoundError, match=r"regressors of subj02 missing: .*run `braindiff fit --subject 2`"):
        load_roi_models(settings, ["2"])
