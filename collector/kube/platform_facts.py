"""The cluster's add-ons as the Kubernetes API shows them, as plain immutable data.

Produced by collector.kube.platform (reads beside the node list) and read by the rules
(ingress_controller, default_storage_class, gpu_operator, prometheus_stack,
kubernetes_version), none of which import `kubernetes`.

Every read has an outcome: `ok`, `not_installed` (the API answered 404: the kind or the
object does not exist, which is a fact a rule can judge), `forbidden` (403: we may not
look, so the rule says `unknown` and names the missing permission), or `error` (anything
else: unreachable, timed out, unreadable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ReadState = Literal["ok", "not_installed", "forbidden", "error"]


@dataclass(frozen=True)
class ReadOutcome:
    state: ReadState
    # forbidden: the permission we lack ("list ingressclasses.networking.k8s.io");
    # error / not_installed: what the API said, in one line.
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def describe(self, what: str) -> str:
        """One line for a reason: what could not be judged, and why."""
        if self.state == "forbidden":
            return f"cannot read {what}: the collector lacks permission to {self.detail}"
        if self.state == "not_installed":
            return f"{what}: not installed"
        if self.state == "error":
            return f"cannot read {what}: {self.detail}"
        return what


OK = ReadOutcome("ok")
NOT_READ = ReadOutcome("error", "not read yet")


@dataclass(frozen=True)
class IngressClassInfo:
    name: str
    controller: str
    default: bool  # annotation ingressclass.kubernetes.io/is-default-class: "true"


@dataclass(frozen=True)
class StorageClassInfo:
    name: str
    provisioner: str
    default: bool  # annotation storageclass.kubernetes.io/is-default-class (or the beta one)


@dataclass(frozen=True)
class ClusterPolicyInfo:
    name: str
    state: str  # status.state: "ready", "notReady", "" while the operator has not reconciled
    namespace: str  # status.namespace: where the operator runs
    version: str  # app.kubernetes.io/version label (set by the chart since 2022-12), or ""


@dataclass(frozen=True)
class OperatorDeploymentInfo:
    namespace: str
    name: str
    version: str  # "" when no label or tag says it
    version_source: str  # "app.kubernetes.io/version", "helm.sh/chart", "image tag" or ""
    image: str
    ready_replicas: int
    replicas: int


@dataclass(frozen=True)
class PlatformFacts:
    ingress: ReadOutcome = NOT_READ
    ingress_classes: tuple[IngressClassInfo, ...] = ()
    storage: ReadOutcome = NOT_READ
    storage_classes: tuple[StorageClassInfo, ...] = ()
    cluster_policy: ReadOutcome = NOT_READ
    cluster_policies: tuple[ClusterPolicyInfo, ...] = ()
    operator: ReadOutcome = NOT_READ
    operator_deployment: OperatorDeploymentInfo | None = None
    # The prometheuses.monitoring.coreos.com CRD, then the Prometheus objects themselves.
    prometheus_crd: ReadOutcome = NOT_READ
    prometheus_crd_versions: tuple[str, ...] = ()
    prometheus: ReadOutcome = NOT_READ
    prometheus_objects: tuple[str, ...] = ()  # "namespace/name", at most a page
    # OpenShift: ClusterVersion `version` (config.openshift.io/v1); not_installed = not OpenShift.
    openshift: ReadOutcome = NOT_READ
    openshift_version: str = ""
    openshift_history: tuple[tuple[str, str], ...] = ()  # (version, state), newest first
