"""The config helpers: fields with help, bool-safe number checks, building from dicts with did-you-mean."""

import dataclasses

import pytest

from dept_vl._dataclass import check_choice, check_int, check_number, from_dict, help_of, setting
from dept_vl.errors import ConfigError


@dataclasses.dataclass
class Inner:
    size: int = setting(3, "how big")


@dataclasses.dataclass
class Outer:
    inner: Inner = setting(factory=Inner, help="the inner part")
    rate: float = setting(0.5, "how fast")


def test_setting_carries_help_and_defaults():
    fields = {f.name: f for f in dataclasses.fields(Outer)}
    assert help_of(fields["rate"]) == "how fast" and Outer().rate == 0.5 and Outer().inner == Inner(3)


def test_checks_refuse_booleans_and_name_the_field():
    assert check_int("n", 3, 1) == 3 and check_number("x", 2, above=0) == 2.0
    for bad in (True, 0, 1.5, "2"):
        with pytest.raises(ConfigError, match=f"n must be an integer >= 1, got {bad!r}"):
            check_int("n", bad, 1)
    with pytest.raises(ConfigError, match="x must be > 0, got False"):
        check_number("x", False, above=0)
    with pytest.raises(ConfigError, match="x must be >= 0, got -1"):
        check_number("x", -1, minimum=0)
    assert check_number("x", 0, minimum=0) == 0.0
    with pytest.raises(ConfigError, match="kind must be one of a, b, got 'c'"):
        check_choice("kind", "c", ("a", "b"))


def test_from_dict_recurses_and_suggests():
    assert from_dict(Outer, {"inner": {"size": 5}, "rate": 1.0}) == Outer(Inner(5), 1.0)
    with pytest.raises(ConfigError, match=r"unknown key Outer.inner.sise \(did you mean 'size'\?\)"):
        from_dict(Outer, {"inner": {"sise": 5}})
    with pytest.raises(ConfigError, match="Outer must be a mapping, got list"):
        from_dict(Outer, [1])
