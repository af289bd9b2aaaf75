"""The one kmock Kubernetes API double: complete answers (/version, metav1.Status), a
loopback server the doubles share, and a kubeconfig pointing at it.

tests/support/kube.py (the node list), kube_cluster.py (a Run:ai cluster's add-ons) and
kubeauth.py (TokenReview and pods) each add their routes and state to `KmockApi`.
kmock serves plain HTTP on 127.0.0.1; generated clients ask for /version/ with a
trailing slash, hence the regex route in `served`.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kmock
from kmock import Response  # type: ignore[attr-defined]  # public, missing from __all__
from kubernetes import client


def version_info(
    git: str,
    *,
    commit: str = "ad4801fd44fe0f125c8d13f1b1d4827e8884476d",
    build_date: str = "2020-09-02T20:01:23Z",
    go_version: str = "go1.13.15",
) -> dict[str, str]:
    """A complete /version answer, as a real API server sends it (EKS and GKE add "+")."""
    match = re.match(r"v(\d+)\.(\d+)", git)
    assert match is not None
    minor = match[2] + ("+" if "-eks-" in git or "-gke." in git else "")
    return {
        "major": match[1],
        "minor": minor,
        "gitVersion": git,
        "gitCommit": commit,
        "gitTreeState": "clean",
        "buildDate": build_date,
        "goVersion": go_version,
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def status(code: int, reason: str, message: str, **details: str) -> dict[str, Any]:
    """A metav1.Status body as the API server sends it with an error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def respond(status_code: int, body: Any) -> Response:
    # Always a fresh Response with an explicit status: kmock keeps a status set by a callback
    # on the reaction, so a 403 once would otherwise stick to later answers.
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(
        status=status_code, payload=payload, headers={"Content-Type": "application/json"}
    )


@dataclass
class KmockApi:
    """A kmock server on loopback; a double adds its state and routes."""

    handler: kmock.RawHandler
    port: int
    server: kmock.Server | None = None
    # What /version answers (read per request: tests change it while it runs).
    version: dict[str, str] = field(default_factory=lambda: version_info("v1.17.9"))

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


A = TypeVar("A", bound=KmockApi)


@asynccontextmanager
async def served(make: Callable[[kmock.RawHandler, int, kmock.Server], A]) -> AsyncIterator[A]:
    """A running double made by `make(handler, port, server)`, answering /version; the
    caller adds its routes to `api.handler`. Stopped on exit."""
    async with kmock.RawHandler() as handler:
        server = kmock.Server(handler)
        await server.__aenter__()
        api = make(handler, server.port, server)

        def serve_version(request: kmock.Request) -> Response:
            return respond(200, api.version)

        handler["get", re.compile(r"/version/?")] << serve_version
        try:
            yield api
        finally:
            await api.stop()


def write_kubeconfig(
    path: Path, server: str, *, user: str = "tester", token: str | None = "not-a-real-token"
) -> Path:
    """A kubeconfig for the kmock API at `server`, as an operator's file would look
    (`token` None: no credentials at all)."""
    credentials = {"token": token} if token is not None else {}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": user}}],
        "current-context": "kmock",
    }
    path.write_text(json.dumps(config))
    return path
