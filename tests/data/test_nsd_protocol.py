"""Items 7 and 8 of docs/reproduce.md (sessions, captions) and the NSD file faults of issue 15."""

import dataclasses
import json

import h5py
import numpy as np
import pytest

from braindiff_app.data import nsd
from braindiff_app.data import nsd_layout as L
from braindiff_app.protocol import PAPER_SESSIONS, PROTOCOLS
from tests.nsd_factory import make_nsd


# -- item 7: sessions ----------------------------------------------------------------------------------------------
def test_item7_default_is_sessions_1_to_37_even_when_40_are_present(tmp_path):
    tiny = make_nsd(tmp_path / "nsd", n_sessions=40, T=2)
    result = nsd.prepare_subject(tiny.root, 1, tmp_path / "out", progress=False)
    assert result.sessions == PAPER_SESSIONS == tuple(range(1, 38))
    # the test set, computed here from the design: shared images among the trials of sessions 1-37
    T = 2
    trials = np.arange(37 * T)
    expected_test = {int(i) for i in tiny.trial_ids[trials] if int(i) in tiny.shared_ids}
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert set(meta["nsd_ids_test"]) == expected_test and result.n_test == len(expected_test)
    every = nsd.prepare_subject(tiny.root, 1, tmp_path / "all", sessions=range(1, 41), progress=False)
    all_test = {int(i) for i in tiny.trial_ids[np.arange(40 * T)] if int(i) in tiny.shared_ids}
    assert every.n_test == len(all_test) >= result.n_test  # NSD: 1000 with 40 sessions, 982 with 37


def test_item7_a_missing_session_in_the_default_range_is_named(tmp_path):
    tiny = make_nsd(tmp_path / "nsd", n_sessions=5, T=2)
    L.betas_path(tiny.root, 1, 3).unlink()
    with pytest.raises(FileNotFoundError, match=r"betas_session03.nii.gz not found: session 3's betas \(the "
                                                r"default is sessions 1-37.*--sessions"):
        nsd.prepare_subject(tiny.root, 1, tmp_path / "out", progress=False)
    # an explicit list without it works
    assert nsd.prepare_subject(tiny.root, 1, tmp_path / "out", sessions=[1, 2, 4], progress=False).sessions == (
        1, 2, 4)


def test_item7_default_stops_at_the_designs_last_session(tiny_nsd):
    # the tiny design holds 3 sessions of 10 trials (+ 7 trials): the default is 1-3, not 1-37
    assert nsd.default_sessions(tiny_nsd.root, 1) == [1, 2, 3]


# -- item 8: captions ----------------------------------------------------------------------------------------------
def _write_curated(root, n_images, per_image):
    table = np.full((n_images, 5), "", dtype="<U40")
    for i in range(n_images):
        for k in range(per_image(i)):
            table[i, k] = f"curated {i} #{k}"
    path = L.curated_captions_path(root)
    np.save(path, table)
    return table


def test_item8_reference_reads_the_curated_npy_and_keeps_what_it_holds(tiny_nsd, tmp_path):
    table = _write_curated(tiny_nsd.root, len(tiny_nsd.images), lambda i: 1 + i % 5)
    L.stim_info_path(tiny_nsd.root).unlink()  # the reference needs no stimulus table for its captions
    nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "ref", protocol="reference", progress=False)
    meta = json.loads((tmp_path / "ref" / "meta.json").read_text())
    captions = json.loads((tmp_path / "ref" / "captions_test.json").read_text())
    # the reference: cin = list(annots[annots != '']) for annots = annots_cur[nsd_id]
    assert captions == [list(table[i][table[i] != ""]) for i in meta["nsd_ids_test"]]
    assert meta["protocol"] == "reference" and meta["captions"] == {"source": "curated-npy", "selection": "all"}


def test_item8_braindiff_keeps_the_first_5_coco_captions(tiny_nsd, tmp_path):
    nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "ours", progress=False)
    meta = json.loads((tmp_path / "ours" / "meta.json").read_text())
    captions = json.loads((tmp_path / "ours" / "captions_train.json").read_text())
    assert captions == [tiny_nsd.captions[i][:5] for i in meta["nsd_ids_train"]]  # the factory writes 6
    keep_all = dataclasses.replace(PROTOCOLS["braindiff"], caption_selection="all")
    everything = nsd.gather_captions(tiny_nsd.root, meta["nsd_ids_train"][:3], protocol=keep_all)
    assert everything == [tiny_nsd.captions[i] for i in meta["nsd_ids_train"][:3]]


def test_item8_reference_without_the_curated_file_says_where_it_belongs(tiny_nsd, tmp_path):
    with pytest.raises(FileNotFoundError, match="COCO_73k_annots_curated.npy not found: .*annotations/"):
        nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "ref", protocol="reference", progress=False)


def test_the_pkl_stimulus_table_is_never_unpickled(tiny_nsd, tmp_path):
    """NSD's .pkl copy of the stimulus table is refused with a message naming the .csv to get: unpickling a file
    can run any code it holds (a pickle that would write a marker file proves nothing ran)."""
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    L.stim_info_pkl_path(tiny_nsd.root).write_bytes(pickle.dumps(Payload()))
    L.stim_info_path(tiny_nsd.root).unlink()
    with pytest.raises(FileNotFoundError, match=r"nsd_stim_info_merged.csv not found: .*its .pkl copy is never "
                       "opened: unpickling a file can run any code"):
        nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "pkl", progress=False)
    assert not marker.exists()


# -- NSD file faults -----------------------------------------------------------------------------------------------
def test_truncated_betas_name_the_file(tiny_nsd, tmp_path):
    path = L.betas_path(tiny_nsd.root, 1, 2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"betas_session02.nii.gz"):
        nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "out", progress=False)


def test_corrupt_betas_name_the_file(tiny_nsd, tmp_path):
    path = L.betas_path(tiny_nsd.root, 1, 2)
    data = bytearray(path.read_bytes())
    for k in range(len(data) // 2, len(data) - 10):
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"betas_session02.nii.gz: truncated or corrupt"):
        nsd.prepare_subject(tiny_nsd.root, 1, tmp_path / "out", progress=False)


def test_read_session_in_chunks_equals_the_whole_volume(tiny_nsd):
    mask = nsd.read_mask(tiny_nsd.root, 1)
    for chunk in (1, 3, 10, 64):
        np.testing.assert_array_equal(nsd.read_session(tiny_nsd.root, 1, 2, mask, chunk_trials=chunk),
                                      tiny_nsd.betas[2][mask].T)


def test_corrupt_stimuli_chunk_names_the_file_and_leaves_nothing_half_written(tiny_nsd, tmp_path):
    path = L.stimuli_path(tiny_nsd.root)
    path.unlink()
    with h5py.File(path, "w") as fh:  # compressed chunks, so a damaged one fails to decode
        fh.create_dataset("imgBrick", data=tiny_nsd.images, chunks=(1, *tiny_nsd.images.shape[1:]),
                          compression="gzip")
    with h5py.File(path, "r") as fh:
        infos = [fh["imgBrick"].id.get_chunk_info(i) for i in range(fh["imgBrick"].id.get_num_chunks())]
    data = bytearray(path.read_bytes())
    for info in infos:  # every chunk damaged: whichever image is read first fails
        for k in range(info.byte_offset, info.byte_offset + info.size):
            data[k] = 0xFF
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"nsd_stimuli.hdf5: cannot read image \d+ of imgBrick"):
        nsd.prepare_subject(tiny_nsd.root, 1, out, progress=False)
    leftovers = sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".partial")
    assert leftovers == [] and not (out / "images_train.npy").exists() and not (out / "meta.json").exists()


def test_half_prepared_subject_is_refused_by_extract(tiny_nsd, tmp_path):
    """A prepare that failed at the stimuli stage leaves fmri_*.npy without meta.json."""
    from braindiff_app.config import load_settings
    from braindiff_app.extraction import extract_clip_features, extract_vdvae_features

    settings = load_settings(tier="demo", home=tmp_path / "home")
    out = settings.subject_dir("prepared", 1)
    L.stimuli_path(tiny_nsd.root).write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="nsd_stimuli.hdf5"):
        nsd.prepare_subject(tiny_nsd.root, 1, out, progress=False)
    assert (out / "fmri_train.npy").exists() and not (out / "meta.json").exists()
    for extract in (extract_vdvae_features, extract_clip_features):
        with pytest.raises(FileNotFoundError, match=r"meta.json: not found.*braindiff prepare --subject 1"):
            extract(settings, 1, progress=False)
