"""What the collector knows from the Kubernetes API, as plain immutable data.

Produced by collector.kube.adapter (the adapter over the official client) and read by the
rules, the exposition and the status page, none of which import `kubernetes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.kube.platform_facts import PlatformFacts


@dataclass(frozen=True)
class KubeNode:
    name: str
    control_plane: bool  # node-role.kubernetes.io/control-plane or .../master label
    roles: tuple[str, ...]
    taints: tuple[str, ...]  # "key=value:Effect"
    capacity_cpu: float  # cores
    capacity_memory_bytes: int
    capacity_gpus: int  # nvidia.com/gpu
    allocatable_cpu: float
    allocatable_memory_bytes: int
    allocatable_gpus: int
    kubelet_version: str
    container_runtime_version: str
    ready: bool
    # Root-disk size as the kubelet reports it (capacity.ephemeral-storage); 0 = not reported.
    capacity_ephemeral_storage_bytes: int = 0
    # Only the node's nvidia.com/ labels (GPU Feature Discovery, GPU Operator), sorted and
    # bounded: the other labels are roles (above) or of no use to any rule.
    nvidia_labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class KubeFacts:
    """The latest successful read, or why there is none.

    `error` set means the API could not be read (unreachable, forbidden, standalone):
    Kubernetes-backed requirements then read `unknown` with this reason, never a
    stale pass. `server_version` is the git version string, e.g. "v1.16.15-eks-abc".
    """

    server_version: str = ""
    nodes: tuple[KubeNode, ...] = ()
    error: str | None = "standalone: no Kubernetes API configured"
    fetched_at: float = 0.0
    # The cluster add-ons (ingress, storage, GPU Operator, Prometheus, OpenShift) read beside
    # the nodes; None when not read (standalone, or a source without platform reads).
    platform: PlatformFacts | None = None

    @property
    def available(self) -> bool:
        return self.error is None


STANDALONE = KubeFacts()
