"""The agent's built-in targets and the collector's runai-2020 profile list the same endpoints."""

from __future__ import annotations

from agent.config import load_config
from collector.profile import load_profile

SHARED_FIELDS = ("name", "host", "port", "path", "phase", "expect_status", "require_header_for")


def test_agent_defaults_equal_profile_targets() -> None:
    agent = [t.model_dump(include=set(SHARED_FIELDS)) for t in load_config(None).egress.targets]
    profile = [
        t.model_dump(include=set(SHARED_FIELDS)) for t in load_profile("runai-2020").egress.targets
    ]
    assert agent == profile
    assert {t["phase"] for t in profile} == {"install", "runtime"}
