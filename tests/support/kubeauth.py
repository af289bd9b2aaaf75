"""A Kubernetes API double (kmock) that answers TokenReview and pods as a real one does.

Tokens are JWT-shaped (header.payload.signature, the payload carrying `exp`, `aud`,
`sub` and the `kubernetes.io` claims a projected ServiceAccount token has) so the
collector's expiry parsing sees what it sees in a cluster; the API, not the signature,
decides who a token belongs to, as a real TokenReview does. Answers follow
authentication.k8s.io/v1: `status.authenticated` only when true, `status.user` with
`username` `system:serviceaccount:NS:NAME`, `uid`, `groups`, and `extra` holding the
pod name/uid (and the node name on Kubernetes >= 1.30); a refused token gets
`status.error` and an empty user, like the API server.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
from kmock import Response  # type: ignore[attr-defined]  # public, missing from __all__

from tests.support.kube_api import (
    KmockApi,
    respond,
    served,
    status,
    version_info,
    write_kubeconfig,
)

FIXTURE_NODES = (
    Path(__file__).resolve().parents[1] / "fixtures" / "kube" / "gpu-cluster" / "nodes.json"
)
AUDIENCE = "preflight-collector"
BAD_SIGNATURE = (
    "[invalid bearer token, square/go-jose: error in cryptographic primitive, token lookup failed]"
)
NAMESPACE = "preflight"
AGENT_SA = "preflight-agent"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Grant:
    """Who a token is: a ServiceAccount's token bound to a pod on a node."""

    namespace: str
    service_account: str
    pod: str
    pod_uid: str
    node: str
    audiences: tuple[str, ...]
    expires: float


def make_token(grant: Grant) -> str:
    header = {"alg": "RS256", "kid": "test-key"}
    now = int(time.time())
    payload = {
        "aud": list(grant.audiences),
        "exp": int(grant.expires),
        "iat": now,
        "nbf": now,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": str(uuid.uuid4()),
        "sub": f"system:serviceaccount:{grant.namespace}:{grant.service_account}",
        "kubernetes.io": {
            "namespace": grant.namespace,
            "node": {"name": grant.node, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, grant.node))},
            "pod": {"name": grant.pod, "uid": grant.pod_uid},
            "serviceaccount": {"name": grant.service_account, "uid": str(uuid.uuid4())},
        },
    }
    parts = [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode())]
    return ".".join([*parts, _b64(secrets.token_bytes(64))])


def pod_object(grant: Grant) -> dict[str, Any]:
    """A complete agent Pod as `kubectl get pod -o json` prints it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": grant.pod,
            "namespace": grant.namespace,
            "uid": grant.pod_uid,
            "resourceVersion": "48213",
            "creationTimestamp": "2026-11-30T08:00:00Z",
            "labels": {"app.kubernetes.io/name": "preflight-agent"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "name": "preflight-agent",
                    "uid": "5c0e4d2a-3b1f-4f0e-9a57-0c9b8f1d2e3a",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "nodeName": grant.node,
            "serviceAccountName": grant.service_account,
            "containers": [{"name": "agent", "image": "ghcr.io/preflight/preflight:0.1.0"}],
        },
        "status": {"phase": "Running", "hostIP": "10.0.0.7", "podIP": "10.244.1.9"},
    }


def node_object(name: str) -> dict[str, Any]:
    """A complete Node (the fixture's CPU node, renamed), for the node list."""
    template = json.loads(FIXTURE_NODES.read_text())["items"][-1]
    node: dict[str, Any] = copy.deepcopy(template)
    node["metadata"]["name"] = name
    node["metadata"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    node["metadata"]["labels"]["kubernetes.io/hostname"] = name
    return node


VERSION = version_info(
    "v1.31.4",
    commit="a78aa47129b8539636eb86a9d00e31b2720fe06b",
    build_date="2024-12-10T11:36:46Z",
    go_version="go1.22.10",
)


@dataclass
class FakeAuthApi(KmockApi):
    """What the kmock-served API answers; tests change it while it runs."""

    version: dict[str, str] = field(default_factory=lambda: dict(VERSION))
    # token -> grant; unknown tokens are refused like a bad signature.
    grants: dict[str, Grant] = field(default_factory=dict)
    # Answer the node-name extra (Kubernetes >= 1.30); False: only pod name/uid (older).
    node_name_extra: bool = True
    # Accept TokenReviews but answer only after this many seconds (an API server stuck
    # behind an overloaded etcd); 0 answers at once.
    review_delay: float = 0.0
    # When set, TokenReviews are answered only once the event is set (a test holds a
    # review pending for as long as it needs, without timing).
    review_gate: asyncio.Event | None = None
    # The cluster's nodes: every node a token was issued for (the collector also reads
    # /version and the node list, as in a cluster).
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    pod_reads: list[str] = field(default_factory=list)

    def issue(
        self,
        node: str,
        *,
        service_account: str = AGENT_SA,
        namespace: str = NAMESPACE,
        audiences: tuple[str, ...] = (AUDIENCE,),
        lifetime: float = 3600.0,
    ) -> str:
        """A new valid token for an agent pod on `node`."""
        grant = Grant(
            namespace=namespace,
            service_account=service_account,
            pod=f"{service_account}-{secrets.token_hex(3)}",
            pod_uid=str(uuid.uuid4()),
            node=node,
            audiences=audiences,
            expires=time.time() + lifetime,
        )
        token = make_token(grant)
        self.grants[token] = grant
        self.nodes.setdefault(node, node_object(node))
        return token

    def review(self, body: Any) -> dict[str, Any]:
        spec = body.get("spec", {}) if isinstance(body, dict) else {}
        token = spec.get("token", "")
        wanted = spec.get("audiences") or []
        answer: dict[str, Any] = {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
        }
        grant = self.grants.get(token)
        if grant is None or grant.expires <= time.time():
            answer["status"] = {"user": {}, "error": BAD_SIGNATURE}
            return answer
        matched = [a for a in wanted if a in grant.audiences] if wanted else list(grant.audiences)
        if not matched:
            audiences = json.dumps(list(grant.audiences))
            error = f"[invalid bearer token, token audiences {audiences} is invalid for the target audiences {json.dumps(wanted)}]"  # noqa: E501
            answer["status"] = {"user": {}, "error": error}
            return answer
        extra = {
            "authentication.kubernetes.io/credential-id": [f"JTI={uuid.uuid4()}"],
            "authentication.kubernetes.io/pod-name": [grant.pod],
            "authentication.kubernetes.io/pod-uid": [grant.pod_uid],
        }
        if self.node_name_extra:
            extra["authentication.kubernetes.io/node-name"] = [grant.node]
            extra["authentication.kubernetes.io/node-uid"] = [
                str(uuid.uuid5(uuid.NAMESPACE_DNS, grant.node))
            ]
        answer["status"] = {
            "authenticated": True,
            "user": {
                "username": f"system:serviceaccount:{grant.namespace}:{grant.service_account}",
                "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, grant.service_account)),
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{grant.namespace}",
                    "system:authenticated",
                ],
                "extra": extra,
            },
            "audiences": matched,
        }
        return answer

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        for grant in self.grants.values():
            if grant.namespace == namespace and grant.pod == name:
                return pod_object(grant)
        return None


def _not_found(namespace: str, name: str) -> dict[str, Any]:
    return status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")


@asynccontextmanager
async def auth_api() -> AsyncIterator[FakeAuthApi]:
    async with served(lambda h, port, s: FakeAuthApi(handler=h, port=port, server=s)) as fake:
        handler = fake.handler

        async def serve_review(request: kmock.Request) -> Response:
            body = json.loads(request.body or b"{}")
            fake.reviews.append(body)
            if fake.review_delay:
                await asyncio.sleep(fake.review_delay)
            if fake.review_gate is not None:
                await fake.review_gate.wait()
            return respond(201, fake.review(body))

        def serve_pod(request: kmock.Request) -> Response:
            match = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)", request.url.path)
            assert match is not None
            fake.pod_reads.append(match[2])
            pod = fake.pod(match[1], match[2])
            return respond(200, pod) if pod else respond(404, _not_found(match[1], match[2]))

        def serve_nodes(request: kmock.Request) -> Response:
            items = [fake.nodes[name] for name in sorted(fake.nodes)]
            return respond(
                200,
                {"kind": "NodeList", "apiVersion": "v1",
                 "metadata": {"resourceVersion": "100100"}, "items": items},
            )  # fmt: skip

        handler["get /api/v1/nodes"] << serve_nodes
        handler["post /apis/authentication.k8s.io/v1/tokenreviews"] << serve_review
        handler["get", re.compile(r"/api/v1/namespaces/[^/]+/pods/[^/]+")] << serve_pod
        yield fake


class ThreadedAuthApi:
    """The same API double on its own event loop in a thread, for tests that block.

    End-to-end tests wait on real processes with blocking polls; kmock must keep
    answering meanwhile, so it cannot share the test's loop.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.api: FakeAuthApi | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with auth_api() as api:
            self.api = api
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> FakeAuthApi:
        self._thread.start()
        if not self._ready.wait(10) or self.api is None:
            raise RuntimeError("the Kubernetes API double did not start")
        return self.api

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for the double (plain HTTP, no credentials: it checks none)."""
        assert self.api is not None
        return write_kubeconfig(path, self.api.host, user="preflight-collector", token=None)
