"""Typed config: NaN and infinities refused wherever a range is checked, and a secret's value never in a message."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import yaml

from ids_core.typedconfig import ConfigError, apply_overrides, build, describe, setting

SECRET = "hunter2-123456789"


@dataclass
class Inner:
    delay: float = setting(1.0, min=0.5)
    ratio: float = setting(0.5, min=0.0, max=1.0)
    free: float = 2.0  # no range: any float


@dataclass
class Settings:
    inner: Inner = setting(factory=Inner)
    count: int = setting(3, min=1)
    password: str = setting("", secret=True)
    tokens: list[str] = setting(factory=list, secret=True)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("key", ["delay", "ratio"])
def test_non_finite_is_refused_where_a_range_is_checked(key, value):
    with pytest.raises(ConfigError, match=rf"^inner\.{key}: .* is not a finite number; allowed: "):
        build(Settings, {"inner": {key: value}})


def test_non_finite_passes_where_no_range_is_checked():
    assert math.isinf(build(Settings, {"inner": {"free": math.inf}}).inner.free)


@pytest.mark.parametrize(
    "data",
    [{"password": 123456789}, {"password": [SECRET]}, {"password": {"a": SECRET}}, {"tokens": SECRET},
     {"tokens": [SECRET, 5]}, {"password": 3.5}],
    ids=["int", "list", "mapping", "str for a list", "int in a list", "float"],
)  # fmt: skip
def test_a_secret_value_is_never_in_the_message(data):
    with pytest.raises(ConfigError) as e:
        build(Settings, data)
    message = str(e.value)
    assert next(iter(data)) in message and "value hidden" in message, message
    for text in (SECRET, "123456789", "3.5"):
        assert text not in message, message


def test_a_bad_yaml_override_is_refused_without_its_value():
    with pytest.raises(ConfigError) as e:
        apply_overrides({}, [f"password=[{SECRET}"], where="--set")
    assert str(e.value).startswith("--set password: value is not valid YAML (") and SECRET not in str(e.value)
    with pytest.raises(ConfigError) as e:
        apply_overrides({}, [SECRET], where="--set")
    assert SECRET not in str(e.value)


def test_secrets_still_work_and_describe_lists_them():
    assert build(Settings, yaml.safe_load(f"password: '{SECRET}'")).password == SECRET
    assert "password = ''" in "\n".join(describe(Settings))
