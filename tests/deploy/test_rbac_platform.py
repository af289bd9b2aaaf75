"""The collector's ClusterRole grants exactly the add-on reads collector.kube.platform makes.

The reader is run against the kmock cluster with every read answered; each request it made
is mapped to (API group, resource, verb, name) and must be granted by a rule of the role,
and every add-on rule of the role must be used by some request.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from collector.kube.platform import read_platform
from tests.support.kube_cluster import cluster_api

RBAC = Path(__file__).resolve().parents[2] / "deploy/kustomize/base/collector-rbac.yaml"
CORE = {("", "nodes"), ("authentication.k8s.io", "tokenreviews")}
_NAMED = re.compile(
    r"^/apis/(?P<group>[^/]+)/[^/]+/(?:namespaces/[^/]+/)?(?P<res>[^/]+)/(?P<name>[^/]+)$"
)
_LIST = re.compile(r"^/apis/(?P<group>[^/]+)/[^/]+/(?P<res>[^/]+)$")


def _grants() -> set[tuple[str, str, str, str]]:
    role = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "ClusterRole")
    out = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                if (group, resource) in CORE:
                    continue
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames", [""]):
                        out.add((group, resource, verb, name))
    return out


def _permission(path: str) -> tuple[str, str, str, str]:
    if match := _LIST.match(path):
        return match["group"], match["res"], "list", ""
    match = _NAMED.match(path)
    assert match is not None, path
    return match["group"], match["res"], "get", match["name"]


async def test_every_add_on_read_is_granted_and_every_grant_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    original = client.ApiClient.call_api

    def recording(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(url.split("?", 1)[0])
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(client.ApiClient, "call_api", recording)
    async with cluster_api() as api:
        with client.ApiClient(api.configuration()) as raw:
            await asyncio.to_thread(read_platform, raw, 5.0)
        paths = [url.removeprefix(api.host) for url in seen]
    assert len(paths) == 7
    assert {_permission(p) for p in paths} == _grants()
