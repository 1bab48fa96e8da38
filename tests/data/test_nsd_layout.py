"""NSD layout: paths follow NSD's names and each writer's file reads back in its real format."""

import json

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy.io import loadmat

from braindiff_app.data import nsd_layout as L


def test_paths_follow_nsd_names(tmp_path):
    assert L.expdesign_path(tmp_path).relative_to(tmp_path).as_posix() == \
        "nsddata/experiments/nsd/nsd_expdesign.mat"
    assert L.betas_path(tmp_path, 1, 3).relative_to(tmp_path).as_posix() == (
        "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session03.nii.gz")
    assert L.roi_path(tmp_path, 7, "floc-faces").relative_to(tmp_path).as_posix() == \
        "nsddata/ppdata/subj07/func1pt8mm/roi/floc-faces.nii.gz"
    assert L.stimuli_path(tmp_path).name == "nsd_stimuli.hdf5"
    assert L.captions_path(tmp_path, "val2017").name == "captions_val2017.json"
    assert L.session_from_betas_path("betas_session12.nii.gz") == 12
    assert L.session_from_betas_path("betas_session12.hdf5") is None


def test_path_errors(tmp_path):
    with pytest.raises(ValueError, match="subject: expected an NSD subject number 1-8, got 9"):
        L.betas_path(tmp_path, 9, 1)
    with pytest.raises(ValueError, match="session"):
        L.betas_path(tmp_path, 1, 0)
    with pytest.raises(ValueError, match="name: expected one of"):
        L.roi_path(tmp_path, 1, "V1")
    with pytest.raises(ValueError, match="split"):
        L.captions_path(tmp_path, "test2017")


def test_writers_round_trip(tmp_path):
    L.write_expdesign(tmp_path, masterordering=[3, 1, 2], subjectim=np.arange(1, 33).reshape(8, 4),
                      sharedix=[5, 6])
    mat = loadmat(L.expdesign_path(tmp_path))
    assert mat["masterordering"].shape == (1, 3) and mat["sharedix"].tolist() == [[5, 6]]
    assert mat["subjectim"][1, 0] == 5

    betas = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    img = nib.load(L.write_betas(tmp_path, 2, 1, betas))
    assert img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(img.dataobj), betas)
    with pytest.raises(ValueError, match="int16 4D"):
        L.write_betas(tmp_path, 2, 1, betas.astype(np.float32))

    roi = np.array([-1, 0, 1], dtype=np.int8).reshape(1, 1, 3)
    np.testing.assert_array_equal(np.asarray(nib.load(L.write_roi(tmp_path, 2, "nsdgeneral", roi)).dataobj), roi)

    images = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    with h5py.File(L.write_stimuli(tmp_path, images, chunk=2)) as fh:
        np.testing.assert_array_equal(fh["imgBrick"][3], images[3])

    csv_text = L.write_stim_info(tmp_path, [0, 1], [42, 43], ["train2017", "val2017"]).read_text()
    assert csv_text.splitlines()[2] == "1,43,val2017,1,False"
    doc = json.loads(L.write_captions(tmp_path, "train2017", {42: ["a cat", "a dog"]}).read_text())
    assert [a["caption"] for a in doc["annotations"] if a["image_id"] == 42] == ["a cat", "a dog"]
    # No temporary file is left behind.
    assert not list(tmp_path.rglob(".tmp-*"))
