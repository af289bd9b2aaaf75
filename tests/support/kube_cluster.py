"""A Kubernetes API of a 2026 Run:ai cluster, served by kmock on loopback.

The objects in tests/fixtures/kube/runai-2025/ are complete, as `kubectl get -o json`
prints them: nodes with the real GFD label set of a DGX H100, an ingress-nginx
IngressClass, StorageClasses, a gpu-operator v25.10 ClusterPolicy with its real status
and Deployment, the kube-prometheus-stack CRD and Prometheus, and an OpenShift
ClusterVersion with an update history. Tests change `answers` while it runs: each path
answers its (status, body), so a test removes an add-on (404), forbids it (403) or edits
an object, exactly as a real cluster would show it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
from kmock import Response  # type: ignore[attr-defined]  # public, missing from __all__

from tests.support import kube_api
from tests.support.kube_api import KmockApi, respond, served

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kube" / "runai-2025"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def version_info(git: str) -> dict[str, str]:
    """/version of the 2026 cluster's API server."""
    return kube_api.version_info(
        git,
        commit="2c7d1a4e9b0f3c6e8d5a7b9c1e3f5a7b9c1d3e5f",
        build_date="2026-01-15T10:12:33Z",
        go_version="go1.24.9",
    )


def status(code: int, reason: str, message: str, kind: str = "") -> dict[str, Any]:
    """A metav1.Status body as the API server sends it with an error."""
    return kube_api.status(code, reason, message, **({"kind": kind} if kind else {}))


NOT_FOUND = (404, status(404, "NotFound", "the server could not find the requested resource"))


def forbidden(verb: str, resource: str, group: str, name: str = "") -> tuple[int, Any]:
    who = 'User "system:serviceaccount:preflight:preflight-collector"'
    what = f'resource "{resource}" in API group "{group}"'
    target = f' "{name}"' if name else ""
    return (
        403,
        status(
            403,
            "Forbidden",
            f"{resource}.{group}{target} is forbidden: {who} cannot {verb} {what} "
            "at the cluster scope",
            resource,
        ),
    )


PATHS = {
    "nodes": "/api/v1/nodes",
    "ingressclasses": "/apis/networking.k8s.io/v1/ingressclasses",
    "storageclasses": "/apis/storage.k8s.io/v1/storageclasses",
    "clusterpolicies": "/apis/nvidia.com/v1/clusterpolicies",
    "gpu-operator": "/apis/apps/v1/namespaces/gpu-operator/deployments/gpu-operator",
    "nvidia-gpu-operator": "/apis/apps/v1/namespaces/nvidia-gpu-operator/deployments/gpu-operator",
    "prometheus-crd": (
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/prometheuses.monitoring.coreos.com"
    ),
    "prometheuses": "/apis/monitoring.coreos.com/v1/prometheuses",
    "clusterversion": "/apis/config.openshift.io/v1/clusterversions/version",
}


def default_answers() -> dict[str, tuple[int, Any]]:
    """A plain (not OpenShift) Kubernetes 1.34 cluster with every add-on of Run:ai 2.25."""
    return {
        "nodes": (200, fixture("nodes")),
        "ingressclasses": (200, fixture("ingressclasses")),
        "storageclasses": (200, fixture("storageclasses")),
        "clusterpolicies": (200, fixture("clusterpolicies")),
        "gpu-operator": (200, fixture("gpu-operator-deployment")),
        "nvidia-gpu-operator": NOT_FOUND,
        "prometheus-crd": (200, fixture("prometheus-crd")),
        "prometheuses": (200, fixture("prometheuses")),
        "clusterversion": NOT_FOUND,
    }


@dataclass
class ClusterApi(KmockApi):
    version: dict[str, str] = field(default_factory=lambda: version_info("v1.34.2"))
    answers: dict[str, tuple[int, Any]] = field(default_factory=default_answers)
    requests: list[str] = field(default_factory=list)

    def body(self, key: str) -> Any:
        """The body served for `key`, to edit in place (a copy is served from then on)."""
        code, body = self.answers[key]
        body = copy.deepcopy(body)
        self.answers[key] = (code, body)
        return body

    def openshift(self, history: list[tuple[str, str]] | None = None) -> None:
        """Turns the cluster into OpenShift; `history` (version, state) newest first."""
        cv = fixture("clusterversion")
        if history is not None:
            cv["status"]["history"] = [
                {
                    "acceptedRisks": "",
                    "completionTime": None if state == "Partial" else "2026-02-01T10:00:00Z",
                    "image": "quay.io/openshift-release-dev/ocp-release@sha256:00",
                    "startedTime": "2026-02-01T09:00:00Z",
                    "state": state,
                    "verified": True,
                    "version": version,
                }
                for version, state in history
            ]
        self.answers["clusterversion"] = (200, cv)


@asynccontextmanager
async def cluster_api() -> AsyncIterator[ClusterApi]:
    async with served(lambda h, port, s: ClusterApi(handler=h, port=port, server=s)) as api:
        for key, path in PATHS.items():

            def serve(request: kmock.Request, key: str = key) -> Response:
                api.requests.append(key)
                return respond(*api.answers[key])

            api.handler[f"get {path}"] << serve
        yield api
