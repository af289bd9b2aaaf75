"""The node-list Kubernetes API (`api` fixture, `FakeApi`) on the kmock double of
tests/support/kube_api.py: the fixture node list (tests/fixtures/kube/gpu-cluster/nodes.json)
and /version, both changeable while it runs."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import pytest
from kmock import Response  # type: ignore[attr-defined]  # public, missing from __all__

from tests.support.kube_api import KmockApi, respond, served
from tests.support.kube_api import status as api_status
from tests.support.kube_api import version_info as version_info

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kube"


NODES = json.loads((FIXTURES / "gpu-cluster" / "nodes.json").read_text())


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status answered to the node list."""
    return api_status(code, reason, message, kind="nodes")


FORBIDDEN = status(
    403,
    "Forbidden",
    'nodes is forbidden: User "system:serviceaccount:preflight:collector" cannot list '
    'resource "nodes" in API group "" at the cluster scope',
)


@dataclass
class FakeApi(KmockApi):
    """What the kmock-served API answers; tests change it while it runs."""

    nodes: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(NODES))
    # (status, body) answered to the node list instead of `nodes`, or None.
    nodes_override: tuple[int, Any] | None = None
    node_requests: list[kmock.Request] = field(default_factory=list)


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    async with served(lambda h, port, s: FakeApi(handler=h, port=port, server=s)) as fake:

        def serve_nodes(request: kmock.Request) -> Response:
            fake.node_requests.append(request)
            if fake.nodes_override is not None:
                return respond(*fake.nodes_override)
            return respond(200, fake.nodes)

        fake.handler["get /api/v1/nodes"] << serve_nodes
        yield fake
