"""The Brain response tab on the committed demo workspace: handlers, then every endpoint through gradio_client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from braindiff_app import config
from braindiff_app.config import load_settings
from braindiff_app.ui.brain_response import BrainResponseHandlers, preferred_words
from braindiff_app.ui.state import AppState
from tests.conftest import free_port

REAL_PRECOMPUTED = config.PACKAGE_DIR / "precomputed"


def _image(value) -> np.ndarray:
    if isinstance(value, dict) and "value" in value:  # an update (new value and label)
        value = value["value"]
    path = value["path"] if isinstance(value, dict) else value
    return np.asarray(Image.open(Path(path)).convert("RGB"))


@pytest.fixture
def demo_settings(monkeypatch, tmp_path):
    """An empty home (the committed demo workspace) with the shipped bundles (the test images)."""
    monkeypatch.setattr("braindiff_app.config.PRECOMPUTED_DIR", REAL_PRECOMPUTED)
    return load_settings(home=tmp_path / "home", tier="demo")


def test_a_click_on_a_regions_voxel_returns_that_voxels_index(demo_settings):
    handlers = BrainResponseHandlers(AppState(demo_settings))
    _, lookup = handlers.flatmap("1")
    atlas = handlers.models().roi.atlases["1"]
    for region in ("faces", "V1", "places"):
        ys, xs = np.nonzero(np.isin(lookup, atlas.regions[region]))
        voxel = handlers.voxel_at("1", int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
        assert voxel == lookup[ys[len(ys) // 2], xs[len(xs) // 2]] and voxel in set(atlas.regions[region].tolist())
    ys, xs = np.nonzero(lookup < 0)
    with pytest.raises(ValueError, match="off the cortex"):
        handlers.voxel_at("1", int(xs[0]), int(ys[0]))
    with pytest.raises(ValueError, match="off the cortex"):
        handlers.voxel_at("1", 10**6, 3)


def test_preferred_words_are_the_over_represented_ones():
    everything = [["a red car"], ["a blue car"], ["a smiling face"], ["a face and a tree"], ["a tree"]] * 3
    top = [["a smiling face"], ["a face and a tree"], ["a smiling face"]]
    words = preferred_words(top, everything)
    assert words[0] in {"face", "smiling"} and "car" not in words


def test_every_endpoint_through_gradio_client(demo_settings, tmp_path):
    from gradio_client import Client, handle_file

    from braindiff_app.ui import build_app, launch_app

    app, _, components = build_app(demo_settings)
    assert [v for _, v in components["brain.subject"].choices] == ["1", "2", "5", "7"]
    port = free_port()
    launch_app(app, demo_settings, port=port, block=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        endpoints = client.view_api(return_format="dict")["named_endpoints"]
        assert {"/brain_response", "/voxel_tuning", "/brain_steer"} <= set(endpoints)

        # The round trip of test image 0: prediction and truth on the flatmap, decoded images, region bars.
        summary, shown, vdvae, final, predicted, reference, bars = client.predict(
            "1", 0, None, 0, api_name="/brain_response")
        # The committed encoder's own held-out accuracy, read straight from its safetensors file.
        from safetensors.numpy import load_file

        from braindiff_app.config import DEMO_ROI_HOME

        stored = load_file(DEMO_ROI_HOME / "demo" / "encoders" / "subj01" / "encoder.safetensors")
        median_r = float(np.median(stored["eval_accuracy"]))
        assert 0.1 < median_r < 0.9  # a real fit, not noise
        assert f"median r = {median_r:.2f}" in summary and "r(predicted, true)" in summary
        handlers = BrainResponseHandlers(AppState(demo_settings))
        _, images, _ = handlers.test_images("1")
        np.testing.assert_array_equal(_image(shown), images[0])
        flat, lookup = handlers.flatmap("1")
        drawn, truth = _image(predicted), _image(reference)
        assert drawn.shape == truth.shape == (*lookup.shape, 3)
        on = lookup >= 0
        assert np.abs(drawn[on].astype(int) - flat[..., :3][on]).mean() > 20  # coloured where voxels are
        np.testing.assert_array_equal(drawn[~on], flat[..., :3][~on])
        assert np.corrcoef(drawn[on][:, 0].astype(float), truth[on][:, 0].astype(float))[0, 1] > 0.2
        for picture in (vdvae, final):
            decoded = _image(picture)
            assert decoded.ndim == 3 and decoded.std() > 5  # an image, not a flat field
        assert _image(bars).shape[0] > 100

        # Voxel tuning: a click on a face voxel names that voxel; off the cortex: a clear message.
        atlas = handlers.models().roi.atlases["1"]
        ys, xs = np.nonzero(np.isin(lookup, atlas.regions["faces"]))
        x, y = int(xs[0]), int(ys[0])
        md, top_measured, top_predicted = client.predict("1", x, y, api_name="/voxel_tuning")
        assert f"**Voxel {lookup[y, x]}** (faces" in md and "against the true response" in md
        assert len(top_measured) == len(top_predicted) == 6
        ys, xs = np.nonzero(lookup < 0)
        with pytest.raises(Exception, match="off the cortex"):
            client.predict("1", int(xs[0]), int(ys[0]), api_name="/voxel_tuning")

        # Enhance / suppress: the regenerated image and the activation curve over the dials.
        steered, curve = client.predict("1", 0, None, "faces", 1.0, 0, api_name="/brain_steer")
        assert _image(steered).std() > 5
        points = {round(row[0], 2): row[1] for row in curve["data"]}
        assert set(points) == {-1.0, -0.5, 0.0, 0.5, 1.0}
        assert points[1.0] > points[-1.0]

        # Bad uploads: a file that is not an image, and a 1 px image.
        junk = tmp_path / "notes.png"
        junk.write_bytes(b"not an image at all")
        with pytest.raises(Exception, match="notes.png: not an image file"):
            client.predict("1", 0, handle_file(str(junk)), 0, api_name="/brain_response")
        tiny = tmp_path / "tiny.png"
        Image.new("RGB", (1, 1), "red").save(tiny)
        with pytest.raises(Exception, match="at least 8 x 8 pixels, got 1 x 1"):
            client.predict("1", 0, handle_file(str(tiny)), 0, api_name="/brain_response")

        # Best-of-N in the ROI studio: roi_generate's named input candidates ranks N images.
        from braindiff_app.roi import Recipe

        vdvae_img, final_img, _, recipe_file, gallery, *_ = client.predict(
            subject="1", seed=5, canvas=None, paint_weight=1.0, faces=1.0, candidates=3, api_name="/roi_generate")
        recipe = Recipe.load(recipe_file if isinstance(recipe_file, str) else recipe_file["path"])
        assert recipe.settings["candidates"] == 3 and len(recipe.ranking) == 3
        scores = [score for _, score in recipe.ranking]
        assert scores == sorted(scores, reverse=True) and {s for s, _ in recipe.ranking} == {5, 6, 7}
        labels = [item[1] if isinstance(item, (list, tuple)) else item["caption"] for item in gallery]
        best_seed, best_score = recipe.ranking[0]
        assert labels[0] == f"1 · S1 · faces+1 · seed {best_seed} · rank 1 ({best_score:+.2f})"  # best first
        assert [label.split(" · rank ")[1][0] for label in labels] == ["1", "2", "3"]
        single = client.predict(subject="1", seed=5, canvas=None, paint_weight=1.0, faces=1.0, candidates=1,
                                api_name="/roi_generate")
        assert Recipe.load(single[3] if isinstance(single[3], str) else single[3]["path"]).ranking == ()
    finally:
        app.close()


def test_the_tab_shares_the_roi_studios_models_and_flatmaps(demo_settings):
    from braindiff_app.ui.roi_handlers import ROIHandlers

    state = AppState(demo_settings)
    roi = ROIHandlers(state)
    handlers = BrainResponseHandlers(state, roi=roi)
    assert handlers.models() is roi.encoders() and handlers.models().roi is roi.models()  # one pipeline in the app
    assert handlers.flatmap("1") is roi.flatmap("1")  # the studio's cached flatmap, not a second read


def test_the_studios_best_of_n_is_one_batch_ranked_as_the_library_ranks(demo_settings):
    from braindiff_app.ui.roi_handlers import ROIHandlers

    handlers = ROIHandlers(AppState(demo_settings))
    recipe = handlers.recipe("1", {"faces": 1.0, "places": -0.5}, None, painted_weight=1.0, seed=5)
    result, ranked = handlers.generate_ranked(recipe, 4)
    assert handlers.batcher.batch_sizes == [4]  # the four candidates in one pipeline call
    library = handlers.encoders().best_of_n(recipe, 4)  # the CLI's and the bench's call
    assert ranked.seeds.tolist() == library.seeds.tolist() and sorted(ranked.seeds.tolist()) == [5, 6, 7, 8]
    np.testing.assert_allclose(ranked.scores, library.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.final, library.finals[0])  # the studio shows the best candidate
    assert result.final.std() > 5
    for bad in (0, 9, 2.0, True):  # the handler checks N itself (API and library callers skip the slider)
        with pytest.raises(ValueError, match="candidates: expected an integer from 1 to 8"):
            handlers.generate_ranked(recipe, bad)
    assert handlers.batcher.batch_sizes == [4]  # nothing ran for them


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG header that declares ``width`` x ``height`` (what a decompression bomb looks like before decoding)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + \
        chunk(b"IEND", b"")


def test_an_upload_declaring_a_huge_image_is_refused_from_its_header(demo_settings, tmp_path):
    import braindiff_app.ui.roi_handlers  # noqa: F401  (the app lowers PIL's limit when the studio is imported)

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_declaring(20000, 20000))
    handlers = BrainResponseHandlers(AppState(demo_settings))
    with pytest.raises(ValueError, match=r"bomb.png: too large to decode here \(more than [\d,]+ pixels"):
        handlers.read_upload(str(bomb))
