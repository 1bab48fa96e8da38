"""The Protocol object and the --protocol flag of every command that computes."""

import dataclasses

import pytest

from braindiff_app.cli import build_parser
from braindiff_app.protocol import PAPER_SESSIONS, PROTOCOL_CHOICES, PROTOCOLS, Protocol, get_protocol


def test_two_named_protocols_differ_in_every_item_but_sessions():
    ours, ref = PROTOCOLS["braindiff"], PROTOCOLS["reference"]
    assert get_protocol() is ours and get_protocol("reference") is ref and get_protocol(ref) is ref
    assert set(ours.differences(ref)) == set(PROTOCOL_CHOICES)  # items 1-6 and 8
    assert ours.sessions == ref.sessions == PAPER_SESSIONS == tuple(range(1, 38))  # item 7
    assert ours.to_json()["sessions"] == list(range(1, 38))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ours.vdvae_latents = "sample"


def test_bad_protocols_are_named():
    with pytest.raises(ValueError, match="protocol"):
        get_protocol("paper")
    with pytest.raises(TypeError, match="protocol: expected a name"):
        get_protocol(3)
    with pytest.raises(ValueError, match="Protocol.vdvae_pixels"):
        dataclasses.replace(PROTOCOLS["braindiff"], vdvae_pixels="median")
    assert isinstance(dataclasses.replace(PROTOCOLS["braindiff"], sessions=[1, 2]), Protocol)


@pytest.mark.parametrize("command", [["prepare", "--subject", "1"], ["extract", "vdvae", "--subject", "1"],
                                     ["extract", "clip", "--subject", "1"], ["reconstruct", "--subject", "1"],
                                     ["roi", "--regions", "V1:+1"], ["evaluate", "demo-subj01"]], ids=" ".join)
def test_every_command_that_computes_takes_protocol(command):
    parser = build_parser()
    assert parser.parse_args(command).protocol == "braindiff"
    assert parser.parse_args([*command, "--protocol", "reference"]).protocol == "reference"
    with pytest.raises(SystemExit):
        parser.parse_args([*command, "--protocol", "paper"])
