"""Reads the cluster's add-ons beside the node list: ingress, storage, GPU Operator, Prometheus.

Called by collector.kube (`KubeSource(platform_reader=read_platform)`) inside the same
worker thread and with the same API client as the node list, after the nodes were read.
It never raises: every read ends in a `ReadOutcome` (see collector.kube.platform_facts):

- 404 is a fact, "not installed" (the API group, the kind or the object is absent);
- 403 is `forbidden`, naming the verb and resource the collector's role lacks, so a rule
  reads `unknown` and says which permission to grant;
- anything else (timeouts, 5xx, unreadable JSON) is `error` with a one-line reason.

Bounded: each list reads at most `max_items` objects in pages of `page_size`; the
Prometheus objects are one small page (the rules only need "at least one"); all reads
together share `budget` seconds, and a read that would start after it is spent is an
`error` without a request. Only the read verbs the RBAC in deploy/ grants are used:
list IngressClasses, StorageClasses, ClusterPolicies and Prometheuses; get the
prometheuses CRD, ClusterVersion `version` and the `gpu-operator` Deployment. No Secret
is ever read.

Responses are read raw (`_preload_content=False`), as in collector.kube: the generated
models are strict and custom objects have none.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3.exceptions
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from collector.kube.errors import one_line, status_message
from collector.kube.platform_facts import (
    OK,
    ClusterPolicyInfo,
    IngressClassInfo,
    OperatorDeploymentInfo,
    PlatformFacts,
    ReadOutcome,
    StorageClassInfo,
)

__all__ = ["PlatformSettings", "operator_version", "read_platform"]

DEFAULT_INGRESS = "ingressclass.kubernetes.io/is-default-class"
DEFAULT_STORAGE = "storageclass.kubernetes.io/is-default-class"
DEFAULT_STORAGE_BETA = "storageclass.beta.kubernetes.io/is-default-class"
PROMETHEUS_CRD = "prometheuses.monitoring.coreos.com"
_MAX_DETAIL = 200


@dataclass(frozen=True)
class PlatformSettings:
    # Where the GPU Operator's Deployment may live when no ClusterPolicy names its namespace:
    # the Helm chart's documented namespace, then OpenShift's OperatorHub default.
    operator_namespaces: tuple[str, ...] = ("gpu-operator", "nvidia-gpu-operator")
    operator_deployment: str = "gpu-operator"
    page_size: int = 200
    max_items: int = 1000
    prometheus_page: int = 20
    budget: float = 30.0


class _Spent(Exception):
    """The read budget is spent; no further request starts."""


class _Unreadable(Exception):
    pass


def _short(text: str) -> str:
    return one_line(text, _MAX_DETAIL)


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _annotation_true(meta: Mapping[str, Any], *keys: str) -> bool:
    annotations = _obj(meta.get("annotations"))
    return any(_str(annotations.get(k)).strip().lower() == "true" for k in keys)


# --- versions -------------------------------------------------------------------------------

_VERSIONISH = re.compile(r"^v?\d+(\.\d+)*([.-][0-9A-Za-z.-]+)?$")


def _clean_version(text: str) -> str:
    text = text.strip()
    return text.removeprefix("v") if _VERSIONISH.match(text) else ""


def _image_tag(image: str) -> str:
    # registry:port/path/name:tag@digest — the tag is after the last ":" of the last segment.
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else ""


def operator_version(labels: Mapping[str, Any], images: list[str]) -> tuple[str, str]:
    """(version, where it came from) of a gpu-operator Deployment; ("", "") when unknown.

    The chart sets app.kubernetes.io/version and helm.sh/chart=gpu-operator-<version>;
    OperatorHub installs set neither, but the operator image is tagged with its version.
    """
    version = _clean_version(_str(labels.get("app.kubernetes.io/version")))
    if version:
        return version, "app.kubernetes.io/version"
    chart = _str(labels.get("helm.sh/chart"))
    if chart.startswith("gpu-operator-"):
        version = _clean_version(chart.removeprefix("gpu-operator-"))
        if version:
            return version, "helm.sh/chart"
    for image in images:
        version = _clean_version(_image_tag(image))
        if version:
            return version, "image tag"
    return "", ""


# --- parsing --------------------------------------------------------------------------------


def _items(body: Any, kind: str) -> tuple[list[Mapping[str, Any]], str]:
    page = _obj(body)
    if not page:
        raise _Unreadable(f"the {kind} answer is not an object")
    items = page.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise _Unreadable(f"the {kind} answer has no items array")
    token = _str(_obj(page.get("metadata")).get("continue"))
    return [_obj(i) for i in items], token


def _ingress_class(item: Mapping[str, Any]) -> IngressClassInfo:
    meta = _obj(item.get("metadata"))
    return IngressClassInfo(
        name=_str(meta.get("name")),
        controller=_str(_obj(item.get("spec")).get("controller")),
        default=_annotation_true(meta, DEFAULT_INGRESS),
    )


def _storage_class(item: Mapping[str, Any]) -> StorageClassInfo:
    meta = _obj(item.get("metadata"))
    return StorageClassInfo(
        name=_str(meta.get("name")),
        provisioner=_str(item.get("provisioner")),
        default=_annotation_true(meta, DEFAULT_STORAGE, DEFAULT_STORAGE_BETA),
    )


def _cluster_policy(item: Mapping[str, Any]) -> ClusterPolicyInfo:
    meta = _obj(item.get("metadata"))
    status = _obj(item.get("status"))
    return ClusterPolicyInfo(
        name=_str(meta.get("name")),
        state=_str(status.get("state")),
        namespace=_str(status.get("namespace")),
        version=_clean_version(_str(_obj(meta.get("labels")).get("app.kubernetes.io/version"))),
    )


def _deployment(body: Any) -> OperatorDeploymentInfo:
    obj = _obj(body)
    meta = _obj(obj.get("metadata"))
    spec = _obj(obj.get("spec"))
    pod = _obj(_obj(spec.get("template")).get("spec"))
    containers = pod.get("containers")
    containers = [_obj(c) for c in containers] if isinstance(containers, list) else []
    # The operator container first (the pod may carry sidecars).
    containers.sort(key=lambda c: _str(c.get("name")) != "gpu-operator")
    images = [_str(c.get("image")) for c in containers if _str(c.get("image"))]
    version, source = operator_version(_obj(meta.get("labels")), images)
    status = _obj(obj.get("status"))
    replicas = spec.get("replicas")
    ready = status.get("readyReplicas")
    return OperatorDeploymentInfo(
        namespace=_str(meta.get("namespace")),
        name=_str(meta.get("name")),
        version=version,
        version_source=source,
        image=images[0] if images else "",
        ready_replicas=ready if isinstance(ready, int) else 0,
        replicas=replicas if isinstance(replicas, int) else 1,
    )


def _history(body: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The running OpenShift version and the update history (newest first).

    history[0] is the newest entry; while an update runs it is "Partial", and the cluster
    still runs the last "Completed" one, which is what a support range is judged by.
    """
    status = _obj(body.get("status"))
    raw = status.get("history")
    entries = [_obj(h) for h in raw] if isinstance(raw, list) else []
    history = tuple(
        (_str(h.get("version")), _str(h.get("state"))) for h in entries if _str(h.get("version"))
    )
    completed = next((v for v, state in history if state == "Completed"), "")
    if completed:
        return completed, history
    if history:
        return history[0][0], history
    return _str(_obj(status.get("desired")).get("version")), history


# --- reading --------------------------------------------------------------------------------


class _Reader:
    def __init__(
        self,
        api: Any,
        request_timeout: float,
        settings: PlatformSettings,
        clock: Callable[[], float],
    ) -> None:
        self.api = api
        self.request_timeout = request_timeout
        self.settings = settings
        self.clock = clock
        self.deadline = clock() + settings.budget

    def timeout(self) -> tuple[float, float]:
        left = self.deadline - self.clock()
        if left <= 0.05:
            raise _Spent
        t = min(self.request_timeout, left)
        return (t, t)

    def call(self, permission: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One request; its JSON body, or an exception carrying the outcome."""
        response = fn(*args, _preload_content=False, _request_timeout=self.timeout(), **kwargs)
        data = response.data
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise _Unreadable(f"{permission}: the answer is not JSON") from e

    def outcome(self, permission: str, fn: Callable[[], ReadOutcome]) -> ReadOutcome:
        try:
            return fn()
        except ApiException as e:
            message = status_message(e, _MAX_DETAIL)
            if e.status == 404:
                return ReadOutcome("not_installed", message)
            if e.status == 403:
                return ReadOutcome("forbidden", permission)
            if e.status == 401:
                return ReadOutcome("error", f"credentials rejected (401): {message}")
            return ReadOutcome("error", f"{e.status} {e.reason or ''}: {message}")
        except _Spent:
            return ReadOutcome(
                "error", f"not read: the {self.settings.budget:g}s budget for add-on reads is spent"
            )
        except _Unreadable as e:
            return ReadOutcome("error", f"unreadable answer: {e}")
        except (urllib3.exceptions.HTTPError, OSError) as e:
            return ReadOutcome("error", f"unreachable: {_short(str(e))}")
        except Exception as e:  # the client's own surprises are data too
            return ReadOutcome("error", f"read failed: {_short(repr(e))}")

    def listing(
        self, permission: str, fn: Callable[..., Any], *args: Any
    ) -> tuple[list[Mapping[str, Any]], bool]:
        """Every item of a list (bounded by max_items) and whether it was cut short."""
        items: list[Mapping[str, Any]] = []
        token = ""
        while True:
            kwargs: dict[str, Any] = {"limit": self.settings.page_size}
            if token:
                kwargs["_continue"] = token
            page, token = _items(self.call(permission, fn, *args, **kwargs), permission)
            items.extend(page)
            if not token:
                return items, False
            if len(items) >= self.settings.max_items:
                return items[: self.settings.max_items], True


def read_platform(
    api: Any,
    request_timeout: float,
    settings: PlatformSettings | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PlatformFacts:
    """Every add-on fact, each with its outcome; blocking (run it in a worker thread)."""
    settings = settings or PlatformSettings()
    r = _Reader(api, request_timeout, settings, clock)
    networking = k8s_client.NetworkingV1Api(api)
    storage = k8s_client.StorageV1Api(api)
    custom = k8s_client.CustomObjectsApi(api)
    extensions = k8s_client.ApiextensionsV1Api(api)
    apps = k8s_client.AppsV1Api(api)
    found: dict[str, Any] = {}

    def ingress() -> ReadOutcome:
        items, _ = r.listing("list ingressclasses.networking.k8s.io", networking.list_ingress_class)
        found["ingress"] = tuple(sorted((_ingress_class(i) for i in items), key=lambda c: c.name))
        return OK

    def storage_classes() -> ReadOutcome:
        items, _ = r.listing("list storageclasses.storage.k8s.io", storage.list_storage_class)
        found["storage"] = tuple(sorted((_storage_class(i) for i in items), key=lambda c: c.name))
        return OK

    def policies() -> ReadOutcome:
        items, _ = r.listing(
            "list clusterpolicies.nvidia.com",
            custom.list_cluster_custom_object,
            "nvidia.com",
            "v1",
            "clusterpolicies",
        )
        found["policies"] = tuple(_cluster_policy(i) for i in items)
        return OK

    def operator() -> ReadOutcome:
        named = [p.namespace for p in found.get("policies", ()) if p.namespace]
        namespaces = list(dict.fromkeys([*named, *settings.operator_namespaces]))
        missing: list[str] = []
        for namespace in namespaces:
            permission = (
                f"get deployments.apps {settings.operator_deployment!r} in namespace {namespace!r}"
            )
            try:
                body = r.call(
                    permission,
                    apps.read_namespaced_deployment,
                    settings.operator_deployment,
                    namespace,
                )
            except ApiException as e:
                if e.status == 404:
                    missing.append(namespace)
                    continue
                if e.status == 403:
                    return ReadOutcome("forbidden", permission)
                raise
            found["operator"] = _deployment(body)
            return OK
        return ReadOutcome(
            "not_installed",
            f"no Deployment {settings.operator_deployment!r} in {', '.join(missing)}",
        )

    def crd() -> ReadOutcome:
        body = r.call(
            f"get customresourcedefinitions.apiextensions.k8s.io {PROMETHEUS_CRD!r}",
            extensions.read_custom_resource_definition,
            PROMETHEUS_CRD,
        )
        versions = _obj(body.get("spec")).get("versions") if isinstance(body, Mapping) else None
        found["crd_versions"] = tuple(
            _str(_obj(v).get("name"))
            for v in (versions if isinstance(versions, list) else [])
            if _obj(v).get("served") is True and _str(_obj(v).get("name"))
        )
        return OK

    def prometheuses() -> ReadOutcome:
        # One small page: the rule needs "at least one", and a page bounds the read.
        body = r.call(
            "list prometheuses.monitoring.coreos.com",
            custom.list_cluster_custom_object,
            "monitoring.coreos.com",
            "v1",
            "prometheuses",
            limit=settings.prometheus_page,
        )
        items, _ = _items(body, "prometheuses")
        found["prometheus"] = tuple(
            f"{_str(_obj(i.get('metadata')).get('namespace'))}/"
            f"{_str(_obj(i.get('metadata')).get('name'))}"
            for i in items
        )
        return OK

    def openshift() -> ReadOutcome:
        body = r.call(
            "get clusterversions.config.openshift.io 'version'",
            custom.get_cluster_custom_object,
            "config.openshift.io",
            "v1",
            "clusterversions",
            "version",
        )
        found["openshift"] = _history(_obj(body))
        return OK

    ingress_outcome = r.outcome("list ingressclasses.networking.k8s.io", ingress)
    storage_outcome = r.outcome("list storageclasses.storage.k8s.io", storage_classes)
    policy_outcome = r.outcome("list clusterpolicies.nvidia.com", policies)
    operator_outcome = r.outcome("get deployments.apps", operator)
    crd_outcome = r.outcome(
        f"get customresourcedefinitions.apiextensions.k8s.io {PROMETHEUS_CRD!r}", crd
    )
    prometheus_outcome = r.outcome("list prometheuses.monitoring.coreos.com", prometheuses)
    openshift_outcome = r.outcome("get clusterversions.config.openshift.io 'version'", openshift)
    version, history = found.get("openshift", ("", ()))
    return PlatformFacts(
        ingress=ingress_outcome,
        ingress_classes=found.get("ingress", ()),
        storage=storage_outcome,
        storage_classes=found.get("storage", ()),
        cluster_policy=policy_outcome,
        cluster_policies=found.get("policies", ()),
        operator=operator_outcome,
        operator_deployment=found.get("operator"),
        prometheus_crd=crd_outcome,
        prometheus_crd_versions=found.get("crd_versions", ()),
        prometheus=prometheus_outcome,
        prometheus_objects=found.get("prometheus", ()),
        openshift=openshift_outcome,
        openshift_version=version,
        openshift_history=history,
    )
