import numpy as np
import pytest

from braindiff_app.data.flatmap import load_flatmap
from braindiff_app.demo.anatomy import ROI_FILES, anatomy_summary, build_anatomy, load_anatomy
from braindiff_app.demo.figure import flatmap_values


@pytest.fixture(scope="module")
def anatomy():
    return load_anatomy()


def test_grid_and_masks(anatomy):
    shape = anatomy.shape
    assert anatomy.affine.shape == (4, 4)
    np.testing.assert_allclose(np.linalg.norm(anatomy.affine[:3, :3], axis=0), [2.24, 2.24, 4.13], atol=1e-3)
    assert anatomy.nsdgeneral.shape == shape and anatomy.nsdgeneral.dtype == bool
    assert 3000 < anatomy.nsdgeneral.sum() < 20000
    assert not (anatomy.nsdgeneral & ~anatomy.brain).any()
    # The crop keeps a margin: the mask does not touch the grid's faces.
    for axis in range(3):
        assert not np.take(anatomy.nsdgeneral, [0, -1], axis=axis).any()


def test_rois_inside_mask_and_disjoint(anatomy):
    labelled = np.zeros(anatomy.shape, int)
    for name, labels in ROI_FILES.items():
        volume = anatomy.rois[name]
        assert set(np.unique(volume)) <= {0, *labels}, name
        assert not ((volume > 0) & ~anatomy.nsdgeneral).any(), name
        for value in labels:
            assert (volume == value).sum() > 20, (name, value)
        labelled += volume > 0
    assert labelled.max() == 1  # no voxel in two ROI files
    assert not anatomy.rois["floc-words"].any()  # S1 has no word areas
    assert 7 not in anatomy.rois["prf-visualrois"]  # nor hV4


def test_retinotopy(anatomy):
    early = anatomy.rois["prf-visualrois"] > 0
    ecc, angle = anatomy.eccentricity, anatomy.polar_angle
    assert np.isfinite(ecc[early]).all() and np.isnan(ecc[~early]).all()
    assert ecc[early].min() < 0.5 and ecc[early].max() > 8
    # Each eccentricity band of NSD's prf-eccrois holds voxels.
    counts = np.bincount(np.digitize(ecc[early], (0.5, 1, 2, 4)), minlength=5)
    assert (counts > 20).all(), counts
    # Left hemisphere -> right visual field; dorsal areas -> lower field.
    left = early & (anatomy.hemisphere == 1)
    right = early & (anatomy.hemisphere == 2)
    assert np.mean(np.abs(angle[left]) <= 90) > 0.95
    assert np.mean(np.abs(angle[right]) >= 90) > 0.95
    dorsal = np.isin(anatomy.rois["prf-visualrois"], (2, 4, 6))
    ventral = np.isin(anatomy.rois["prf-visualrois"], (1, 3, 5))
    assert np.mean(np.sin(np.deg2rad(angle[dorsal])) < 0.05) > 0.9
    assert np.mean(np.sin(np.deg2rad(angle[ventral])) > -0.05) > 0.9


def test_flatmap_lookup(anatomy):
    flatmap = load_flatmap()
    h, w = flatmap.pixel_voxel.shape
    assert flatmap.image.shape == (h, w, 4) and flatmap.image.dtype == np.uint8
    assert flatmap.pixel_voxel.max() < np.prod(anatomy.shape)
    on = flatmap.pixel_voxel >= 0
    assert on.mean() > 0.3
    assert (flatmap.pixel_voxel[flatmap.image[..., 3] == 0] == -1).all()  # off the cortex: no voxel
    # Pixels land on visual voxels, and every ROI is reachable from the flatmap.
    visual = flatmap_values(flatmap.pixel_voxel, anatomy.nsdgeneral.astype(float))
    assert np.nanmean(visual) > 0.5
    for name, labels in ROI_FILES.items():
        painted = flatmap_values(flatmap.pixel_voxel, anatomy.rois[name].astype(float))
        for value in labels:
            assert (painted == value).sum() > 50, (name, value)


def test_summary_counts_match(anatomy):
    summary = anatomy_summary()
    assert summary["n_voxels"]["nsdgeneral"] == anatomy.nsdgeneral.sum()
    assert summary["n_voxels"]["V1v"] == (anatomy.rois["prf-visualrois"] == 1).sum()


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="braindiff demo anatomy"):
        load_anatomy(tmp_path)
    with pytest.raises(FileNotFoundError, match="flatmap.png"):
        load_flatmap(tmp_path)


@pytest.mark.slow
def test_build_reproduces_committed_assets(tmp_path):
    pytest.importorskip("cortex")
    build_anatomy(tmp_path)
    fresh, committed = load_anatomy(tmp_path), load_anatomy()
    np.testing.assert_array_equal(fresh.nsdgeneral, committed.nsdgeneral)
    for name in ROI_FILES:
        np.testing.assert_array_equal(fresh.rois[name], committed.rois[name])
    np.testing.assert_array_equal(load_flatmap(tmp_path).pixel_voxel, load_flatmap().pixel_voxel)


def test_build_without_pycortex_names_the_requirements_file(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "cortex", None)  # makes `import cortex` raise ImportError
    with pytest.raises(ImportError, match="requirements-anatomy.txt"):
        build_anatomy(tmp_path)
