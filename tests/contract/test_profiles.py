"""One source of targets: the agent's packaged plan is the profile's; profiles load strictly.

Before issue 12 the agent kept its own copy of the list and this test kept the two
equal; now the agent derives its plan from the same packaged profile file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from agent.config import load_config
from agent.plan import AgentPlan
from preflight.configfile import ConfigError
from preflight.profile import load_profile

SHARED_FIELDS = ("name", "host", "port", "path", "phase", "expect_status", "require_header_for")


def test_agent_packaged_plan_is_the_profile() -> None:
    plan = AgentPlan(load_config(None)).current
    agent = [{f: getattr(t, f) for f in SHARED_FIELDS} for t in plan.targets]
    profile = [
        {f: getattr(t, f) for f in SHARED_FIELDS} for t in load_profile("runai-2020").egress.targets
    ]
    assert agent == profile
    assert {t["phase"] for t in profile} == {"install", "runtime"}
    assert plan.local_targets == () and plan.version
    # The duplicated list is gone for good.
    assert importlib.util.find_spec("agent.targets") is None


def test_profile_by_path_is_validated_strictly(tmp_path: Path) -> None:
    shipped = yaml.safe_load(
        (
            Path(__file__).resolve().parents[2] / "proto/preflight/profiles/runai-2020.yaml"
        ).read_text()
    )
    shipped["name"] = "stricter"
    shipped["kubernetes_version"]["recommended"] = "1.20"
    good = tmp_path / "stricter.yaml"
    good.write_text(yaml.safe_dump(shipped))
    assert load_profile(str(good)).kubernetes_version.recommended == "1.20"
    shipped["hysteresis"]["fail_afterr"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(shipped))
    with pytest.raises(ConfigError, match=r"hysteresis\.fail_afterr"):
        load_profile(str(bad))


def test_profile_versions_must_be_versions(tmp_path: Path) -> None:
    text = (
        Path(__file__).resolve().parents[2] / "proto/preflight/profiles/runai-2020.yaml"
    ).read_text()
    bad = tmp_path / "bad-version.yaml"
    bad.write_text(text.replace('minimum: "1.15"', 'minimum: "fifteen"'))
    with pytest.raises(ConfigError, match=r"kubernetes_version\.minimum"):
        load_profile(str(bad))
