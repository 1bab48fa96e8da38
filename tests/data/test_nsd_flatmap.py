"""NSD subjects' flatmaps: FreeSurfer readers, pixel -> voxel lookup, outlines, cache, missing files."""

from __future__ import annotations

import os

import numpy as np
import pytest

from braindiff_app.config import load_settings
from braindiff_app.data import nsd_layout as L
from braindiff_app.data._flatmap_draw import ROI_COLORS
from braindiff_app.data.atlas import load_atlas
from braindiff_app.data.nsd_flatmap import build_nsd_flatmap, flatmap_inputs, load_nsd_flatmap, read_patch
from braindiff_app.roi import load_subject_flatmap, painted_voxels
from tests.nsd_factory import make_nsd_anatomy


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    return make_nsd_anatomy(tmp_path_factory.mktemp("nsd"))


@pytest.fixture(scope="module")
def painted(nsd):
    """The subject's atlas and its flatmap (image, lookup) through the real tier's load_subject_flatmap."""
    settings = load_settings(home=nsd.root / "home", tier="real", nsd_root=nsd.root)
    atlas = load_atlas(nsd.root, 1)
    return atlas, *load_subject_flatmap(settings, atlas)


def test_patch_round_trip(tmp_path):
    xyz = np.array([[1.5, -2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.5, 0.0]])
    path = L.write_patch(tmp_path, 2, "rh", np.array([7, 0, 3]), xyz, border=np.array([False, True, False]))
    assert path.name == "rh.full.flat.patch.3d" and path.stat().st_size == 8 + 3 * 16
    data = path.read_bytes()
    assert np.frombuffer(data[:12], ">i4").tolist() == [-1, 3, 8]  # header, then vertex 7 + 1
    assert np.frombuffer(data[24:28], ">i4").tolist() == [-1]  # vertex 0 on the border: -(0 + 1)
    vertices, back, border = read_patch(path)
    np.testing.assert_array_equal(vertices, [7, 0, 3])
    np.testing.assert_allclose(back, xyz)
    np.testing.assert_array_equal(border, [False, True, False])
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="rh.full.flat.patch.3d: not a FreeSurfer binary patch"):
        read_patch(path)


def test_image_and_lookup_cover_the_cortex(nsd, painted):
    atlas, image, lookup = painted
    assert image.dtype == np.uint8 and image.shape == (*lookup.shape, 4) and image.shape[1] == 900
    assert (lookup[image[..., 3] == 0] == -1).all()  # transparent off the cortex, no voxel there
    # Curvature shading varies (folds), and every region's outline colour is drawn.
    grey = image[..., 0][(image[..., 3] == 255) & (image[..., 0] == image[..., 1])]
    assert grey.min() < 110 and grey.max() > 190
    # The lookup reaches exactly the nsdgeneral voxels that patch vertices with a position fall in.
    expected = set()
    for hemi in L.HEMISPHERES:
        on_patch = np.unique(nsd.faces[hemi][nsd.in_patch[hemi][nsd.faces[hemi]].all(axis=1)])
        ijk = nsd.vertex_ijk[hemi][on_patch]
        ijk = ijk[(ijk >= 0).all(axis=1)]
        expected |= {tuple(v) for v in ijk if nsd.nsdgeneral[tuple(v)]}
    reached = {tuple(atlas.voxel_ijk[v]) for v in np.unique(lookup[lookup >= 0])}
    assert reached == expected


@pytest.mark.parametrize("region", ["V1", "V2", "faces", "places"])
def test_brush_over_a_region_outline_paints_its_voxels(painted, region):
    atlas, image, lookup = painted
    outline = (image[..., :3] == ROI_COLORS[region]).all(axis=-1)
    assert outline.sum() > 20
    voxels = painted_voxels(outline, lookup)
    assert voxels.size >= 3
    np.testing.assert_array_equal(np.setdiff1d(voxels, atlas.indices(region)), [])
    # A round brush (radius 4 px) on the outline paints region voxels and, across the border, only their neighbours.
    cy, cx = np.argwhere(outline)[outline.sum() // 2]
    yy, xx = np.mgrid[: lookup.shape[0], : lookup.shape[1]]
    brush = painted_voxels((yy - cy) ** 2 + (xx - cx) ** 2 <= 16, lookup)
    assert np.isin(brush, atlas.indices(region)).any()
    ijk = atlas.voxel_ijk
    distance = np.abs(ijk[brush][:, None, :] - ijk[atlas.indices(region)][None]).max(axis=2).min(axis=1)
    assert distance.max() <= 1


def test_cache_is_used_then_rebuilt_when_an_input_changes(nsd, tmp_path, monkeypatch):
    from braindiff_app.data import nsd_flatmap

    first = load_nsd_flatmap(nsd.root, 1, tmp_path, width=120)
    assert (tmp_path / "flatmap.npz").exists()
    calls = []
    monkeypatch.setattr(nsd_flatmap, "build_nsd_flatmap",
                        lambda *a, **k: calls.append(a) or build_nsd_flatmap(*a, **k))
    second = load_nsd_flatmap(nsd.root, 1, tmp_path, width=120)
    assert calls == []
    np.testing.assert_array_equal(second.image, first.image)
    np.testing.assert_array_equal(second.pixel_voxel, first.pixel_voxel)
    load_nsd_flatmap(nsd.root, 1, tmp_path, width=100)  # another width: another identity
    assert len(calls) == 1
    curv = L.surface_path(nsd.root, 1, "lh", "curv")
    stat = curv.stat()
    os.utime(curv, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_nsd_flatmap(nsd.root, 1, tmp_path, width=100)
    assert len(calls) == 2
    load_nsd_flatmap(nsd.root, 1, tmp_path, width=100)
    assert len(calls) == 2


def test_missing_file_names_it_and_presets_still_load(nsd, tmp_path):
    import shutil

    root = tmp_path / "nsd"
    shutil.copytree(nsd.root / "nsddata", root / "nsddata")
    patch = L.surface_path(root, 1, "rh", "full.flat.patch.3d")
    patch.unlink()
    missing = r"rh\.full\.flat\.patch\.3d: missing flattened cortex of subj01 \(rh\)"
    with pytest.raises(FileNotFoundError, match=missing):
        load_nsd_flatmap(root, 1, tmp_path / "cache")
    settings = load_settings(home=tmp_path / "home", tier="real", nsd_root=root)
    atlas = load_atlas(root, 1)  # the atlas (region presets) does not need the surfaces
    assert set(atlas.regions) == {"V1", "V2", "faces", "places"}
    with pytest.raises(FileNotFoundError, match="flattened cortex"):
        load_subject_flatmap(settings, atlas)
    with pytest.raises(FileNotFoundError, match="no NSD folder configured"):
        load_subject_flatmap(load_settings(home=tmp_path / "home", tier="real", nsd_root=None), atlas)
    # ROI files other than nsdgeneral are optional (the factory writes no floc-words or floc-bodies).
    assert [p.name for p, _, required in flatmap_inputs(root, 1) if not required] == [
        "prf-visualrois.nii.gz", "floc-faces.nii.gz", "floc-words.nii.gz", "floc-places.nii.gz",
        "floc-bodies.nii.gz"]


def test_mismatched_files_are_value_errors(nsd, tmp_path):
    import shutil

    root = tmp_path / "nsd"
    shutil.copytree(nsd.root / "nsddata", root / "nsddata")
    L.write_curv(root, 1, "lh", np.zeros(5))
    with pytest.raises(ValueError, match=r"lh\.curv: expected 600 values"):
        build_nsd_flatmap(root, 1, width=60)
