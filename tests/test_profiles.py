from __future__ import annotations

import pytest

from ddgan_core.profiles import PROFILES, describe, get_profile, parse_assignments


def test_every_profile_has_the_same_parameters():
    names = {frozenset(p) for p in PROFILES.values()}
    assert len(names) == 1


def test_overrides_apply_and_none_means_default():
    cfg = get_profile("smoke", seed=3, fid_samples=None)
    assert cfg["seed"] == 3 and cfg["profile"] == "smoke"
    assert cfg["fid_samples"] == PROFILES["smoke"]["fid_samples"]
    assert get_profile("smoke", seed="7")["seed"] == 7  # papermill and --set pass strings


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"profile='gpu' is unknown; valid profiles: \['cpu'"):
        get_profile("gpu")


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown parameter name\(s\) \['sed'\]; valid names:"):
        get_profile("cpu", sed=1)


def test_wrong_type_is_rejected():
    with pytest.raises(ValueError, match="seed='abc' has the wrong type; expected int"):
        get_profile("cpu", seed="abc")


def test_parse_assignments():
    assert parse_assignments(["seed=2", "name=abc", "xs=[1, 2]"]) == {
        "seed": 2, "name": "abc", "xs": [1, 2]}
    with pytest.raises(ValueError, match="expected key=value"):
        parse_assignments(["seed"])


def test_describe_lists_every_profile():
    text = describe()
    assert all(name in text for name in PROFILES)
