"""Built-in egress targets of profile runai-2020 (DESIGN.md §1).

The collector's profile `preflight/profiles/runai-2020.yaml` lists the same
targets; tests/test_profile_targets.py keeps the two equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import EgressTarget

RUNAI_2020: tuple[dict[str, Any], ...] = (
    {
        "name": "runai-charts.storage.googleapis.com",
        "host": "runai-charts.storage.googleapis.com",
        "path": "/",
        "phase": "install",
    },
    {"name": "hub.docker.com", "host": "hub.docker.com", "path": "/", "phase": "install"},
    {
        "name": "gcr.io/run-ai-prod",
        "host": "gcr.io",
        "path": "/v2/",
        "phase": "install",
        "expect_status": (200, 401),
        "require_header_for": {401: "www-authenticate"},
    },
    {
        "name": "quay.io",
        "host": "quay.io",
        "path": "/v2/",
        "phase": "install",
        "expect_status": (200, 401),
    },
    {
        "name": "prometheus-us-central1.grafana.net",
        "host": "prometheus-us-central1.grafana.net",
        "path": "/api/prom/push",
        "phase": "runtime",
    },
    {"name": "app.run.ai", "host": "app.run.ai", "path": "/", "phase": "runtime"},
)


def default_targets() -> tuple[EgressTarget, ...]:
    from agent.config import EgressTarget

    return tuple(EgressTarget(**spec) for spec in RUNAI_2020)
