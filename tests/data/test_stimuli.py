import re

import numpy as np
import pytest

from braindiff_app.demo.stimuli import (
    CATEGORIES,
    KINDS,
    Scene,
    content_labels,
    make_scene,
    render_scene,
    render_scenes,
    scene_captions,
)


def test_render_shapes_and_dtype():
    images, scenes, captions, maps = render_scenes(6, seed=1, size=40, labels=True)
    assert images.shape == (6, 40, 40, 3) and images.dtype == np.uint8
    assert maps.shape == (6, 40, 40) and maps.dtype == np.uint8
    assert len(scenes) == 6 and all(isinstance(s, Scene) for s in scenes)
    assert [len(c) for c in captions] == [5] * 6
    assert maps.max() <= len(CATEGORIES)


def test_deterministic_and_independent_of_count():
    a, scenes_a, cap_a = render_scenes(5, seed=3, size=32)
    b, scenes_b, cap_b = render_scenes(8, seed=3, size=32)
    np.testing.assert_array_equal(a, b[:5])
    assert scenes_a == scenes_b[:5] and cap_a == cap_b[:5]
    c, _, _ = render_scenes(5, seed=4, size=32)
    assert not np.array_equal(a, c)
    # start offsets address the same scenes.
    d, scenes_d, _ = render_scenes(3, seed=3, size=32, start=2)
    np.testing.assert_array_equal(d, b[2:5])


def test_label_map_matches_scene_content():
    for index in range(30):
        scene = make_scene(0, index)
        _, label_map = render_scene(scene, 64, labels=True)
        visible = {CATEGORIES[v - 1] for v in np.unique(label_map) if v > 0}
        # Every visible label belongs to the scene; occlusion may hide some, but not all, objects.
        assert visible <= scene.categories
        assert visible


def test_object_drawn_where_the_scene_says():
    scene = Scene(0, 0, "plain", "white", (make_scene(0, 0).objects[0].__class__("ball", 0.25, 0.75, 0.3, "red"),))
    image, label_map = render_scene(scene, 64, labels=True)
    assert label_map[48, 16] == 1 + CATEGORIES.index("objects")
    assert label_map[16, 48] == 0
    assert image[48, 16, 0] > 150 and image[48, 16, 1] < 100  # red ball
    assert image[16, 48].min() > 200  # white backdrop


def test_content_labels_and_captions_consistent():
    scenes = [make_scene(7, i) for i in range(50)]
    labels = content_labels(scenes)
    assert labels.shape == (50, len(CATEGORIES))
    assert labels.any(axis=1).all()
    # Each category turns up in a balanced world.
    assert labels.mean(axis=0).min() > 0.15
    words = {"faces": ("face",), "bodies": ("person", "figure"), "places": ("building", "house"),
             "words": ("sign",), "objects": ("ball", "cup", "mug", "tree", "car")}
    for scene, row in zip(scenes, labels, strict=True):
        captions = scene_captions(scene)
        assert len(captions) == 5 and all(c.endswith(".") for c in captions)
        for category, present in zip(CATEGORIES, row, strict=True):
            mentioned = [any(re.search(rf"\b{w}\b", c.lower()) for w in words[category]) for c in captions]
            assert all(mentioned) if present else not any(mentioned), (category, captions)
        for obj in scene.objects:
            if obj.kind == "sign":
                assert any(obj.text.lower() in c for c in captions)


def test_every_kind_renders():
    cls = make_scene(0, 0).objects[0].__class__
    for kind in KINDS:
        scene = Scene(0, 0, "plain", "white", (cls(kind, 0.5, 0.5, 0.5, "blue", "STOP" if kind == "sign" else ""),))
        _, label_map = render_scene(scene, 48, labels=True)
        assert (label_map == 1 + CATEGORIES.index(KINDS[kind])).mean() > 0.02, kind


def test_errors():
    with pytest.raises(TypeError, match="scene: expected a Scene"):
        render_scene("not a scene")
    with pytest.raises(ValueError, match="size: expected an image side"):
        render_scene(make_scene(0, 0), size=4)
    with pytest.raises(ValueError, match="index: expected a non-negative"):
        make_scene(0, -1)
    with pytest.raises(TypeError, match=r"scenes\[0\]: expected a Scene"):
        content_labels([1])
