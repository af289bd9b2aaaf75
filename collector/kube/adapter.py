"""The Kubernetes adapter: reads the server version and the nodes into a `KubeFacts`.

The only module of the collector that imports `kubernetes`. `KubeSource.read()` does one
read (version + paginated node list) and never raises: an unreachable API, a 401/403, a
timeout or an unreadable answer all become `KubeFacts(error=...)` with a one-line reason a
person understands. `collector.kube.watcher.KubeWatcher` refreshes it periodically;
quantities are parsed by `collector.kube.quantity`.

Why the synchronous client in a worker thread rather than `kubernetes.aio`: the sync
client is the mature one (the aio flavour is young, see DESIGN §7), and its
`Configuration` is what callers and tests inject. One read is a handful of requests every
refresh interval, so a thread per read costs nothing. A thread cannot be cancelled, so
every request carries a connect/read timeout, urllib3's own retries are off (the watcher
retries with backoff), and a read whose thread is still stuck past its deadline is
reported as such and never doubled by a second one.

Responses are read raw (`_preload_content=False`) and parsed here: the generated models
are strict and would reject the partial objects some distributions and proxies return,
and we need only a few fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import urllib3.exceptions
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from collector.config import KubernetesConfig
from collector.kube.errors import one_line, status_message
from collector.kube.facts import KubeFacts, KubeNode
from collector.kube.platform_facts import PlatformFacts
from collector.kube.quantity import parse_count, parse_cpu, parse_memory

# Reads the cluster add-ons with the API client of a node read (collector.kube.platform);
# None when there is nothing to read (the profile judges no add-on).
PlatformReader = Callable[[Any, float], PlatformFacts | None]

__all__ = ["STANDALONE_ERROR", "KubeMode", "KubeSource"]

log = logging.getLogger(__name__)

# The client's loaders are untyped; these typed aliases keep the untyped surface here.
_load_incluster_config: Callable[..., None] = k8s_config.load_incluster_config
_load_kube_config: Callable[..., None] = k8s_config.load_kube_config


def _close_api_client(api: Any) -> None:
    api.close()


KubeMode = Literal["auto", "in-cluster", "kubeconfig", "none"]

STANDALONE_ERROR = "standalone: no Kubernetes API configured"
GPU_RESOURCE = "nvidia.com/gpu"
ROLE_PREFIX = "node-role.kubernetes.io/"
CONTROL_PLANE_ROLES = frozenset({"control-plane", "master"})
# kops and other 2020-era installers mark roles with this label instead (value = role).
LEGACY_ROLE_LABEL = "kubernetes.io/role"
# GPU Feature Discovery and the GPU Operator label nodes under this prefix (~40 labels).
NVIDIA_LABEL_PREFIX = "nvidia.com/"
MAX_NVIDIA_LABELS = 128
_MAX_DETAIL = 300


# --- parsing the API's JSON ---------------------------------------------------------------


class _Unreadable(Exception):
    """The API answered, but not with what a Kubernetes API answers."""


def _json_body(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        preview = one_line(data[:80].decode("utf-8", "replace"), 80)
        raise _Unreadable(f"{what} is not JSON ({e.__class__.__name__}): {preview!r}") from e


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Unreadable(f"{where} is a {type(value).__name__}, not an object")
    return value


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Unreadable(f"{where} is a {type(value).__name__}, not a string")
    return value


def parse_version(body: Any) -> str:
    """The git version from a /version answer; built from major.minor when it lacks one."""
    info = _mapping(body, "the /version answer")
    git = _text(info.get("gitVersion"), "gitVersion").strip()
    if git:
        return git
    # EKS and GKE report minors like "16+"; the rules parse the git string either way.
    major = _text(info.get("major"), "major").strip().rstrip("+")
    minor = _text(info.get("minor"), "minor").strip().rstrip("+")
    if major.isdigit() and minor.isdigit():
        return f"v{major}.{minor}"
    raise _Unreadable("the /version answer has neither gitVersion nor major/minor")


def _resources(status: Mapping[str, Any], field: str, node: str) -> tuple[float, int, int]:
    values = _mapping(status.get(field), f"node {node!r} status.{field}")
    try:
        cpu = parse_cpu(values["cpu"]) if "cpu" in values else 0.0
        memory = parse_memory(values["memory"]) if "memory" in values else 0
        gpus = parse_count(values[GPU_RESOURCE]) if GPU_RESOURCE in values else 0
    except ValueError as e:
        raise _Unreadable(f"node {node!r} status.{field}: {e}") from e
    return cpu, memory, gpus


def _taint(raw: Any, node: str) -> str:
    taint = _mapping(raw, f"node {node!r} taint")
    key = _text(taint.get("key"), "taint key")
    value = _text(taint.get("value"), "taint value")
    effect = _text(taint.get("effect"), "taint effect")
    # kubectl's notation; a taint without a value is "key:Effect".
    return f"{key}={value}:{effect}" if value else f"{key}:{effect}"


def parse_node(raw: Any) -> KubeNode:
    """One item of a NodeList (raw JSON) as a KubeNode; missing fields read as empty/zero."""
    obj = _mapping(raw, "a node list item")
    metadata = _mapping(obj.get("metadata"), "node metadata")
    name = _text(metadata.get("name"), "node metadata.name")
    if not name:
        raise _Unreadable("a node list item has no metadata.name")
    labels = _mapping(metadata.get("labels"), f"node {name!r} labels")
    roles = {key[len(ROLE_PREFIX) :] for key in labels if key.startswith(ROLE_PREFIX)}
    legacy_role = labels.get(LEGACY_ROLE_LABEL)
    if isinstance(legacy_role, str) and legacy_role:
        roles.add(legacy_role)
    roles.discard("")
    spec = _mapping(obj.get("spec"), f"node {name!r} spec")
    taints_raw = spec.get("taints") or []
    if not isinstance(taints_raw, list):
        raise _Unreadable(f"node {name!r} spec.taints is not a list")
    status = _mapping(obj.get("status"), f"node {name!r} status")
    cap_cpu, cap_mem, cap_gpu = _resources(status, "capacity", name)
    alloc_cpu, alloc_mem, alloc_gpu = _resources(status, "allocatable", name)
    info = _mapping(status.get("nodeInfo"), f"node {name!r} status.nodeInfo")
    conditions = status.get("conditions") or []
    if not isinstance(conditions, list):
        raise _Unreadable(f"node {name!r} status.conditions is not a list")
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in conditions
    )
    nvidia = sorted(
        (key, value)
        for key, value in labels.items()
        if key.startswith(NVIDIA_LABEL_PREFIX) and isinstance(value, str)
    )[:MAX_NVIDIA_LABELS]
    ephemeral = _mapping(status.get("capacity"), f"node {name!r} status.capacity").get(
        "ephemeral-storage"
    )
    try:
        root_disk = parse_memory(ephemeral) if isinstance(ephemeral, str) else 0
    except ValueError as e:
        raise _Unreadable(f"node {name!r} capacity.ephemeral-storage: {e}") from e
    return KubeNode(
        name=name,
        control_plane=bool(roles & CONTROL_PLANE_ROLES),
        roles=tuple(sorted(roles)),
        taints=tuple(_taint(t, name) for t in taints_raw),
        capacity_cpu=cap_cpu,
        capacity_memory_bytes=cap_mem,
        capacity_gpus=cap_gpu,
        allocatable_cpu=alloc_cpu,
        allocatable_memory_bytes=alloc_mem,
        allocatable_gpus=alloc_gpu,
        kubelet_version=_text(info.get("kubeletVersion"), "nodeInfo.kubeletVersion"),
        container_runtime_version=_text(
            info.get("containerRuntimeVersion"), "nodeInfo.containerRuntimeVersion"
        ),
        ready=ready,
        capacity_ephemeral_storage_bytes=root_disk,
        nvidia_labels=tuple(nvidia),
    )


def parse_node_list(body: Any) -> tuple[tuple[KubeNode, ...], str]:
    """Nodes of one NodeList page and its continue token ("" on the last page)."""
    page = _mapping(body, "the node list")
    if page.get("kind") not in (None, "NodeList"):
        raise _Unreadable(f"the node list answer is a {page.get('kind')!r}, not a NodeList")
    items = page.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise _Unreadable("the node list has no items array")
    token = _text(_mapping(page.get("metadata"), "node list metadata").get("continue"), "continue")
    return tuple(parse_node(item) for item in items), token


# --- errors as reasons ----------------------------------------------------------------------


def _api_error(e: ApiException, doing: str) -> str:
    code = e.status
    message = status_message(e)
    if code == 401:
        return f"Kubernetes API rejects our credentials (401 Unauthorized) {doing}: {message}"
    if code == 403:
        return f"Kubernetes API forbids {doing} (403 Forbidden): {message}"
    if code == 0 or code is None:
        return f"Kubernetes API request failed {doing}: {message}"
    return f"Kubernetes API error {doing} ({code} {e.reason or ''}): {message}".replace(" )", ")")


def _network_cause(e: BaseException) -> str:
    """The innermost reason of a urllib3/socket failure, in words."""
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason is not None:
            current = current.reason
            continue
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: look at its cause.
        is_new_connection = isinstance(current, urllib3.exceptions.NewConnectionError)
        if not is_new_connection and isinstance(
            current, (socket.timeout, TimeoutError, urllib3.exceptions.TimeoutError)
        ):
            return "timed out"
        if isinstance(current, socket.gaierror):
            return f"name resolution failed ({current.strerror or current})"
        if isinstance(current, (ssl.SSLError, urllib3.exceptions.SSLError)):
            return f"TLS failed ({one_line(str(current), 160)})"
        if isinstance(current, OSError) and current.errno is not None:
            return one_line(current.strerror or str(current), 160)
        nxt = current.__cause__ or current.__context__
        if nxt is None and current.args and isinstance(current.args[-1], BaseException):
            nxt = current.args[-1]
        if nxt is None:
            break
        current = nxt
    text = str(e)
    if "Connection refused" in text:
        return "connection refused"
    return one_line(text, 160)


# --- the source -------------------------------------------------------------------------------


def _kubeconfig_paths(explicit: Path | None, environ: Mapping[str, str]) -> list[Path]:
    if explicit is not None:
        return [explicit]
    env = environ.get("KUBECONFIG", "")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    home = environ.get("HOME")
    base = Path(home) if home else Path.home()
    return [base / ".kube" / "config"]


class KubeSource:
    """One read of the Kubernetes API at a time; where the API is is decided per read.

    `configuration` (a `kubernetes.client.Configuration`) takes precedence over `mode`: tests
    inject one with `host="http://127.0.0.1:PORT"` for kmock. Otherwise `mode` "auto" means
    in-cluster when KUBERNETES_SERVICE_HOST is set, else the kubeconfig when one exists
    (`kubeconfig`, else KUBECONFIG, else ~/.kube/config), else standalone. A kubeconfig is
    re-read on every read so rotated credentials and edits are picked up; the in-cluster
    configuration is loaded once and refreshes its service account token itself.
    """

    def __init__(
        self,
        mode: KubeMode = "auto",
        *,
        kubeconfig: Path | None = None,
        configuration: k8s_client.Configuration | None = None,
        request_timeout: float = 10.0,
        page_size: int = 500,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        platform_reader: PlatformReader | None = None,
        platform_budget: float = 30.0,
    ) -> None:
        if mode not in ("auto", "in-cluster", "kubeconfig", "none"):
            raise ValueError(f"unknown Kubernetes mode {mode!r}")
        if request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.mode: KubeMode = mode
        self.kubeconfig = kubeconfig
        self.request_timeout = request_timeout
        self.page_size = page_size
        # Version + a first page + slack; pages beyond that share it (30 s by default).
        self.read_deadline = request_timeout * 3
        # Add-on reads (when the profile judges add-ons) share their own budget on top.
        self.platform_reader = platform_reader
        if platform_reader is not None:
            self.read_deadline += platform_budget
        self._configuration = configuration
        self._environ = environ
        self._clock = clock
        self._incluster: k8s_client.Configuration | None = None
        # A worker thread still blocked past its deadline; no second read starts meanwhile.
        self._stuck: asyncio.Future[KubeFacts] | None = None

    @classmethod
    def from_config(
        cls,
        config: KubernetesConfig,
        *,
        configuration: k8s_client.Configuration | None = None,
        request_timeout: float = 10.0,
        platform_reader: PlatformReader | None = None,
    ) -> KubeSource:
        return cls(
            config.mode,
            kubeconfig=config.kubeconfig,
            configuration=configuration,
            request_timeout=request_timeout,
            platform_reader=platform_reader,
        )

    @property
    def standalone(self) -> bool:
        """True when this source can never reach an API (mode none, nothing injected)."""
        return self._configuration is None and self.mode == "none"

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _resolve(self) -> tuple[str, Path | None] | None:
        """Which way to reach the API now: ("injected"|"in-cluster"|"kubeconfig", path)."""
        if self._configuration is not None:
            return "injected", None
        env = self._env()
        if self.mode == "none":
            return None
        if self.mode == "in-cluster":
            return "in-cluster", None
        if self.mode == "kubeconfig":
            return "kubeconfig", None
        if env.get("KUBERNETES_SERVICE_HOST"):
            return "in-cluster", None
        if any(p.is_file() for p in _kubeconfig_paths(self.kubeconfig, env)):
            return "kubeconfig", None
        return None

    def _load_configuration(self, how: str) -> k8s_client.Configuration:
        """A private copy to use for one read (raises ConfigException or OSError)."""
        if how == "injected":
            assert self._configuration is not None
            # Copy rather than mutate the caller's object (retries are set below).
            cfg = copy.deepcopy(self._configuration)
        elif how == "in-cluster":
            if self._incluster is None:
                loaded = k8s_client.Configuration()
                _load_incluster_config(client_configuration=loaded)
                self._incluster = loaded
            cfg = self._incluster
        else:
            paths = _kubeconfig_paths(self.kubeconfig, self._env())
            existing = [p for p in paths if p.is_file()]
            if not existing:
                shown = ", ".join(str(p) for p in paths)
                raise ConfigException(f"no kubeconfig file at {shown}")
            cfg = k8s_client.Configuration()
            _load_kube_config(
                config_file=os.pathsep.join(str(p) for p in existing),
                client_configuration=cfg,
                persist_config=False,
            )
        # The watcher retries with backoff; urllib3 retrying underneath would multiply timeouts.
        cfg.retries = False
        return cfg

    async def read(self) -> KubeFacts:
        """Version and nodes now, or a KubeFacts whose `error` says why not. Never raises."""
        now = self._clock()
        if self._stuck is not None:
            if not self._stuck.done():
                return KubeFacts(
                    error=(
                        "Kubernetes API unreachable: the previous request is still blocked "
                        f"after {self.request_timeout:g}s"
                    ),
                    fetched_at=now,
                )
            self._stuck = None
        try:
            how = self._resolve()
        except OSError as e:
            return KubeFacts(error=f"Kubernetes configuration unusable: {e}", fetched_at=now)
        if how is None:
            return KubeFacts(error=STANDALONE_ERROR, fetched_at=now)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._read_blocking, how[0])
        # Every request has its own timeouts; this outer deadline catches what they cannot
        # (a kubeconfig exec credential plugin that hangs, several slow pages).
        deadline = self.read_deadline
        try:
            return await asyncio.wait_for(asyncio.shield(future), deadline)
        except TimeoutError:
            self._stuck = future
            return KubeFacts(
                error=f"Kubernetes API unreachable: no answer within {deadline:g}s",
                fetched_at=self._clock(),
            )
        except asyncio.CancelledError:
            if not future.done():
                self._stuck = future
            raise
        except Exception as e:  # _read_blocking catches everything; this is the last guard
            log.exception("kube: unexpected failure reading the API")
            return KubeFacts(error=f"Kubernetes API read failed: {e!r}", fetched_at=self._clock())

    def _read_blocking(self, how: str) -> KubeFacts:
        where = "the Kubernetes API"
        try:
            cfg = self._load_configuration(how)
        except (ConfigException, OSError, ValueError, TypeError, KeyError) as e:
            source = f" ({how})" if how != "injected" else ""
            return KubeFacts(
                error=f"Kubernetes configuration unusable{source}: {one_line(str(e))}",
                fetched_at=self._clock(),
            )
        where = cfg.host or where
        api = k8s_client.ApiClient(cfg)
        doing = "reading the server version"
        version = ""
        try:
            timeout = (self.request_timeout, self.request_timeout)
            response: Any = k8s_client.VersionApi(api).get_code(
                _preload_content=False, _request_timeout=timeout
            )
            version = parse_version(_json_body(response.data, "the /version answer"))
            doing = "listing nodes"
            nodes: list[KubeNode] = []
            token = ""
            for _ in range(10_000):  # bounded: a server repeating a token must not loop forever
                kwargs: dict[str, Any] = {"limit": self.page_size}
                if token:
                    kwargs["_continue"] = token
                response = k8s_client.CoreV1Api(api).list_node(
                    _preload_content=False, _request_timeout=timeout, **kwargs
                )
                page, token = parse_node_list(_json_body(response.data, "the node list"))
                nodes.extend(page)
                if not token:
                    break
            else:
                raise _Unreadable("the node list never ends (continue tokens keep coming)")
            # Never raises: each add-on read carries its own outcome (404, 403, error).
            platform = (
                self.platform_reader(api, self.request_timeout) if self.platform_reader else None
            )
            return KubeFacts(
                server_version=version,
                nodes=tuple(sorted(nodes, key=lambda n: n.name)),
                error=None,
                fetched_at=self._clock(),
                platform=platform,
            )
        except ApiException as e:
            error = _api_error(e, doing)
        except _Unreadable as e:
            error = f"Kubernetes API answer unreadable ({doing} at {where}): {e}"
        except (urllib3.exceptions.HTTPError, OSError) as e:
            error = f"Kubernetes API unreachable at {where} ({doing}): {_network_cause(e)}"
        except Exception as e:
            # The client's own surprises (a refresh hook failing, a pydantic check) are data too.
            log.debug("kube: unexpected client failure", exc_info=True)
            error = f"Kubernetes API read failed ({doing} at {where}): {one_line(repr(e))}"
        finally:
            with contextlib.suppress(Exception):
                _close_api_client(api)
        # The version, when it was read, is kept for display; `error` still marks the view.
        return KubeFacts(server_version=version, error=error, fetched_at=self._clock())
