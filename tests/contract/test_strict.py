"""preflight.strict: the pydantic-free sections of the agent config and the profiles.

The same strictness the pydantic models had: unknown keys, wrong types and values out
of range are errors naming the key path (and the file), all of them at once; values
convert as before (durations, paths, lists to tuples, numeric text); building a section
from Python validates exactly like loading one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import pytest

from agent.config import AgentConfig, CollectorTls, EgressTarget, MountsConfig, load_config
from preflight.strict import (
    Check,
    ConfigError,
    Duration,
    Strict,
    StrictError,
    convert,
    parse_mapping,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inner(Strict):
    level: Literal["low", "high"] = "low"
    ratio: Annotated[float, Check(gt=0, le=1)] = 0.5


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outer(Strict):
    name: Annotated[str, Check(min_length=1, pattern=r"^[a-z]+$")]
    count: Annotated[int, Check(ge=1)] = 1
    every: Duration = 30.0
    where: Path | None = None
    inner: tuple[Inner, ...] = ()
    codes: dict[int, str] = dataclasses.field(default_factory=dict)


def errors(data: object) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_mapping(Outer, data, "f.yaml")
    return str(raised.value).splitlines()


def test_values_convert_as_the_pydantic_models_did() -> None:
    outer = parse_mapping(
        Outer,
        {
            "name": "abc",
            "count": "3",
            "every": "1m30s",
            "where": "/etc/x",
            "inner": [{"level": "high", "ratio": 1}],
            "codes": {"401": "WWW-Authenticate"},
        },
        "f.yaml",
    )
    assert outer == Outer(
        name="abc",
        count=3,
        every=90.0,
        where=Path("/etc/x"),
        inner=(Inner(level="high", ratio=1.0),),
        codes={401: "WWW-Authenticate"},
    )


def test_every_error_names_its_key_path_and_the_file() -> None:
    lines = errors(
        {
            "name": "",
            "count": 0,
            "every": "soon",
            "inner": [{}, {"level": "medium", "ratio": 0, "extra": 1}],
            "codes": {"x": "y"},
            "colour": "red",
        }
    )
    keys = [line.split("'")[1] for line in lines]
    assert all(line.startswith("f.yaml: key '") for line in lines)
    assert keys == [
        "colour",
        "name",
        "count",
        "every",
        "inner.1.extra",
        "inner.1.level",
        "inner.1.ratio",
        "codes.x",
    ]
    assert "unknown key" in lines[0]
    assert "at least 1" in lines[1] and "greater than or equal to 1" in lines[2]


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        ({}, "name", "Field required"),
        ({"name": "a", "count": True}, "count", "valid integer"),
        ({"name": "a", "count": 1.5}, "count", "valid integer"),
        ({"name": 7}, "name", "valid string"),
        ({"name": "A"}, "name", "pattern"),
        ({"name": "a", "every": -1}, "every", "positive"),
        ({"name": "a", "where": 3}, "where", "path"),
        ({"name": "a", "inner": {"level": "low"}}, "inner", "list"),
        ({"name": "a", "inner": ["low"]}, "inner.0", "mapping"),
    ],
)
def test_one_wrong_value(data: dict[str, object], key: str, message: str) -> None:
    (line,) = errors(data)
    assert f"key '{key}'" in line and message in line


def test_not_a_mapping_at_the_top() -> None:
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        parse_mapping(Outer, ["name"], "f.yaml")


def test_building_from_python_validates_too() -> None:
    with pytest.raises(StrictError, match="count"):
        Outer(name="a", count=0)
    assert Outer(name="a", every="2s").every == 2.0  # type: ignore[arg-type]
    good = Outer(name="a")
    with pytest.raises(StrictError, match="name"):
        good.replace(name="")
    assert good.replace(count=5).count == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        good.count = 3  # type: ignore[misc]


def test_agent_sections_keep_their_rules(tmp_path: Path) -> None:
    with pytest.raises(StrictError, match="must start with /"):
        EgressTarget(name="x", host="h", path="nope")
    with pytest.raises(StrictError, match="set together"):
        CollectorTls(cert_file=Path("/c"))
    with pytest.raises(StrictError, match="peer_sample"):
        MountsConfig(peer_sample=2000)
    config = tmp_path / "agent.yaml"
    config.write_text(
        "egress:\n  targets:\n    - {name: a, host: h}\n    - {name: a, host: h}\n"
        "collector:\n  resolve_interval: 0\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    text = str(raised.value)
    assert f"{config}: key 'egress': duplicate target names: a" in text
    assert f"{config}: key 'collector.resolve_interval'" in text
    assert AgentConfig().collector.address == "127.0.0.1:9751"


def test_only_optional_unions_are_supported() -> None:
    with pytest.raises(TypeError):
        convert(int | str, 1)
