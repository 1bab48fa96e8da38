"""ROI atlas from a generated NSD-shaped folder."""

from __future__ import annotations

import numpy as np
import pytest

from braindiff_app.data.atlas import ALL_REGIONS, canonical_region, load_atlas, nsdgeneral_voxels
from braindiff_app.data.nsd_layout import roi_path, write_roi

SHAPE = (6, 5, 4)


def _make_nsd_rois(root, subject=1, seed=0, drop_hv4=False):
    """Write nsdgeneral + the six ROI files for one subject with random labels; return the label volumes."""
    rng = np.random.default_rng(seed)
    general = rng.choice([-1, 0, 1], size=SHAPE, p=[0.2, 0.2, 0.6])
    volumes = {"nsdgeneral": general}
    for stem, n_labels in [("prf-visualrois", 7), ("floc-faces", 5), ("floc-words", 5), ("floc-places", 3),
                           ("floc-bodies", 4), ("prf-eccrois", 5)]:
        volume = rng.integers(0, n_labels + 1, size=SHAPE)
        if stem == "prf-visualrois" and drop_hv4:
            volume[volume == 7] = 0
        volumes[stem] = volume
    for stem, volume in volumes.items():
        write_roi(root, subject, stem, volume)
    return volumes


@pytest.fixture
def nsd_rois(tmp_path):
    return tmp_path, _make_nsd_rois(tmp_path)


def test_regions_follow_nsd_labels_inside_nsdgeneral(nsd_rois):
    root, volumes = nsd_rois
    atlas = load_atlas(root, 1)
    ijk = np.argwhere(volumes["nsdgeneral"] > 0)
    assert atlas.n_voxels == len(ijk) and atlas.subject == "1"
    visual = volumes["prf-visualrois"][tuple(ijk.T)]
    np.testing.assert_array_equal(atlas.indices("V1"), np.flatnonzero((visual == 1) | (visual == 2)))
    np.testing.assert_array_equal(atlas.indices("V2"), np.flatnonzero((visual == 3) | (visual == 4)))
    np.testing.assert_array_equal(atlas.indices("V3"), np.flatnonzero((visual == 5) | (visual == 6)))
    np.testing.assert_array_equal(atlas.indices("hV4"), np.flatnonzero(visual == 7))
    faces = volumes["floc-faces"][tuple(ijk.T)]
    np.testing.assert_array_equal(atlas.indices("faces"), np.flatnonzero(faces > 0))
    ecc = volumes["prf-eccrois"][tuple(ijk.T)]
    for label, name in enumerate(["ecc0.5", "ecc1", "ecc2", "ecc4", "ecc4+"], start=1):
        np.testing.assert_array_equal(atlas.indices(name), np.flatnonzero(ecc == label))
    assert set(atlas.regions) == set(ALL_REGIONS) and not atlas.absent
    assert atlas.grid_shape == SHAPE and np.array_equal(atlas.voxel_ijk, ijk)


def test_v1_is_not_taken_from_the_faces_file(nsd_rois):
    root, volumes = nsd_rois
    atlas = load_atlas(root, 1)
    ijk = np.argwhere(volumes["nsdgeneral"] > 0)
    faces = volumes["floc-faces"][tuple(ijk.T)]
    assert not np.array_equal(atlas.indices("V1"), np.flatnonzero((faces == 1) | (faces == 2)))


def test_prepared_voxel_order_is_respected(nsd_rois):
    root, volumes = nsd_rois
    ijk = nsdgeneral_voxels(root, 1)[::-1].copy()
    atlas = load_atlas(root, 1, voxel_ijk=ijk)
    visual = volumes["prf-visualrois"][tuple(ijk.T)]
    np.testing.assert_array_equal(atlas.mask("V1"), (visual == 1) | (visual == 2))


def test_absent_region_is_reported_with_reason(tmp_path):
    _make_nsd_rois(tmp_path, subject=2, drop_hv4=True)
    roi_path(tmp_path, 2, "floc-words").unlink()
    atlas = load_atlas(tmp_path, 2)
    assert atlas.absent["hV4"] == "subject 2 has no hV4 voxels"
    assert "floc-words.nii.gz is missing" in atlas.absent["words"]
    with pytest.raises(ValueError, match="not available for subject 2: subject 2 has no hV4 voxels"):
        atlas.indices("hv4")
    assert "V1" in atlas.regions


def test_errors_name_the_problem(tmp_path, nsd_rois):
    root, _ = nsd_rois
    with pytest.raises(FileNotFoundError, match="nsdgeneral.nii.gz"):
        load_atlas(tmp_path / "nowhere", 1)
    with pytest.raises(ValueError, match=r"voxel_ijk: expected an integer array of shape \(n_voxels, 3\)"):
        load_atlas(root, 1, voxel_ijk=np.zeros((4, 2), dtype=int))
    with pytest.raises(ValueError, match="outside"):
        load_atlas(root, 1, voxel_ijk=np.array([[99, 0, 0]]))
    with pytest.raises(ValueError, match="unknown region 'V9'"):
        canonical_region("V9")
    assert canonical_region("FACES") == "faces" and canonical_region("hv4") == "hV4"
