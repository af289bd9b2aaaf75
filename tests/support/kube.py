"""A Kubernetes API served by kmock on loopback (`api` fixture, `FakeApi`), answering complete
objects: the fixture node list (tests/fixtures/kube/gpu-cluster/nodes.json) and /version."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import pytest
from kmock import Response  # type: ignore[attr-defined]  # public, missing from __all__
from kubernetes import client

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kube"


NODES = json.loads((FIXTURES / "gpu-cluster" / "nodes.json").read_text())


def version_info(git: str) -> dict[str, str]:
    """A complete /version answer, as a real API server sends it."""
    match = re.match(r"v(\d+)\.(\d+)", git)
    assert match is not None
    minor = match[2] + ("+" if "-eks-" in git or "-gke." in git else "")
    return {
        "major": match[1],
        "minor": minor,
        "gitVersion": git,
        "gitCommit": "ad4801fd44fe0f125c8d13f1b1d4827e8884476d",
        "gitTreeState": "clean",
        "buildDate": "2020-09-02T20:01:23Z",
        "goVersion": "go1.13.15",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"kind": "nodes"},
        "code": code,
    }


FORBIDDEN = status(
    403,
    "Forbidden",
    'nodes is forbidden: User "system:serviceaccount:preflight:collector" cannot list '
    'resource "nodes" in API group "" at the cluster scope',
)


@dataclass
class FakeApi:
    """What the kmock-served API answers; tests change it while it runs."""

    handler: kmock.RawHandler
    port: int
    version: dict[str, str] = field(default_factory=lambda: version_info("v1.17.9"))
    nodes: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(NODES))
    # (status, body) answered to the node list instead of `nodes`, or None.
    nodes_override: tuple[int, Any] | None = None
    node_requests: list[kmock.Request] = field(default_factory=list)
    server: kmock.Server | None = None

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configuration(self) -> client.Configuration:
        return client.Configuration(host=self.host)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.__aexit__(None, None, None)
            self.server = None

    async def start(self) -> None:
        # Same port as before, as an API server coming back after a restart.
        self.server = kmock.Server(self.handler, port=self.port)
        await self.server.__aenter__()


def _respond(status_code: int, body: Any) -> Response:
    # Always a fresh Response with an explicit status: kmock keeps a status set by a callback
    # on the reaction, so a 403 once would otherwise stick to later answers.
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(
        status=status_code, payload=payload, headers={"Content-Type": "application/json"}
    )


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    async with kmock.RawHandler() as handler:
        server = kmock.Server(handler)
        await server.__aenter__()
        fake = FakeApi(handler=handler, port=server.port, server=server)

        def serve_version(request: kmock.Request) -> Response:
            return _respond(200, fake.version)

        def serve_nodes(request: kmock.Request) -> Response:
            fake.node_requests.append(request)
            if fake.nodes_override is not None:
                return _respond(*fake.nodes_override)
            return _respond(200, fake.nodes)

        # Generated clients ask for /version/ with a trailing slash.
        handler["get", re.compile(r"/version/?")] << serve_version
        handler["get /api/v1/nodes"] << serve_nodes
        try:
            yield fake
        finally:
            await fake.stop()
