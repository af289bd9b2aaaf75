"""Who a bearer token belongs to, asked of the Kubernetes API (TokenReview, then the pod).

The one module besides collector/kube/adapter.py that talks to the API, for agent
authentication only. A token is reviewed once and the answer cached under a SHA-256
of the token (the token itself is never stored or logged), for at most `cache_ttl`
and never past the token's own `exp`. The node a token speaks for comes from the
`authentication.kubernetes.io/node-name` extra (Kubernetes >= 1.30), else from the
pod the token is bound to (`get pods`, cached by pod uid: a pod never changes node).

The cache is read from the collector's gRPC handler threads (`cached`) and written on
the event loop: a lock around each touch of it, never held across a wait.

Bounded under an API outage: a review waits at most `timeout`, then the caller gets
`Unavailable`; at most `max_in_flight` reviews run at once, beyond that new tokens fail
fast; a cached answer whose TTL ran out but whose token is still valid keeps being used
while the API cannot answer, so agents already verified keep reporting.

The sync client runs in a small thread pool of its own (same reasoning as adapter.py):
every request carries connect/read timeouts and urllib3 retries are off.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

log = logging.getLogger(__name__)

NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
# A refused token is re-asked after this long (a spoofer's garbage must not cost one API
# call per report), and at once when the API could not answer.
NEGATIVE_TTL_SECONDS = 10.0

_load_incluster_config: Callable[..., None] = k8s_config.load_incluster_config
_load_kube_config: Callable[..., None] = k8s_config.load_kube_config


def _close_api_client(api: Any) -> None:
    api.close()  # untyped in the client; kept behind Any here


class Unavailable(Exception):
    """The API could not answer in time; the caller answers UNAVAILABLE (retryable)."""


@dataclass(frozen=True)
class Review:
    """What the API said about one token. `node` is set only when `ok`."""

    ok: bool
    username: str = ""
    node: str = ""
    pod: str = ""
    # Why not ok, for the log and the gRPC detail (never contains the token).
    detail: str = ""


@dataclass
class _Entry:
    review: Review
    fresh_until: float
    valid_until: float


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_expiry(token: str) -> float | None:
    """`exp` of a JWT, read without verifying (the TokenReview did); None when not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _first(extra: Any, key: str) -> str:
    values = extra.get(key) if isinstance(extra, dict) else None
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return ""


def load_api_configuration(
    mode: str, kubeconfig: Path | None, injected: k8s_client.Configuration | None
) -> k8s_client.Configuration:
    """A client configuration for the reviews (raises ConfigException/OSError when none)."""
    if injected is not None:
        cfg = copy.deepcopy(injected)
    elif mode == "in-cluster" or (mode == "auto" and os.environ.get("KUBERNETES_SERVICE_HOST")):
        cfg = k8s_client.Configuration()
        _load_incluster_config(client_configuration=cfg)
    elif mode in ("kubeconfig", "auto"):
        cfg = k8s_client.Configuration()
        _load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None,
            client_configuration=cfg,
            persist_config=False,
        )
    else:
        raise ConfigException("auth.mode kubernetes needs a Kubernetes API (kubernetes.mode none)")
    cfg.retries = False
    return cfg


class TokenReviewer:
    """Reviews tokens for one ServiceAccount and audience; answers from a bounded cache."""

    def __init__(
        self,
        configuration: k8s_client.Configuration,
        *,
        service_account: str,
        audience: str,
        cache_ttl: float = 300.0,
        cache_size: int = 20_000,
        timeout: float = 5.0,
        max_in_flight: int = 64,
        clock: Callable[[], float] = time.time,
    ) -> None:
        namespace, _, name = service_account.partition("/")
        self.namespace = namespace
        self.username = f"system:serviceaccount:{namespace}:{name}"
        self.audience = audience
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._api = k8s_client.ApiClient(configuration)
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tokenreview")
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._cache_lock = threading.Lock()
        # pod uid (or namespace/name) -> node; a pod is never moved to another node.
        self._pods: OrderedDict[str, str] = OrderedDict()
        self._pods_lock = threading.Lock()
        self._in_flight: dict[str, asyncio.Future[Review]] = {}
        self.api_calls = 0
        self.cache_hits = 0

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        _close_api_client(self._api)

    def cached(self, token: str) -> Review | None:
        """The cached answer for `token` while fresh, else None (any thread, never waits)."""
        return self._fresh(token_hash(token), self._clock())[0]

    def _fresh(self, key: str, now: float) -> tuple[Review | None, _Entry | None]:
        # (the fresh answer or None, the entry however old): one look under the lock.
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is not None and now < entry.fresh_until:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return entry.review, entry
        return None, entry

    async def review(self, token: str) -> Review:
        """The cached or fresh answer for `token`; raises Unavailable within `timeout`."""
        key = token_hash(token)
        now = self._clock()
        fresh, entry = self._fresh(key, now)
        if fresh is not None:
            return fresh
        future = self._in_flight.get(key)
        if future is None:
            if len(self._in_flight) >= self.max_in_flight:
                return self._stale_or_unavailable(entry, now, "too many reviews waiting")
            future = asyncio.ensure_future(
                asyncio.wrap_future(self._executor.submit(self._review_blocking, token))
            )
            self._in_flight[key] = future
            future.add_done_callback(lambda done: self._finished(key, token, done))
        try:
            review = await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            return self._stale_or_unavailable(entry, now, f"no answer within {self.timeout:g}s")
        except Unavailable as error:
            return self._stale_or_unavailable(entry, now, str(error))
        return review

    def _finished(self, key: str, token: str, done: asyncio.Future[Review]) -> None:
        # Stored here, not by the waiter: an answer that comes after the waiter gave up
        # still fills the cache, and a failure is retrieved so asyncio does not warn.
        self._in_flight.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            self._store(key, token, done.result())

    def _stale_or_unavailable(self, entry: _Entry | None, now: float, why: str) -> Review:
        # A verified token still within its own validity keeps working through an outage.
        if entry is not None and entry.review.ok and now < entry.valid_until:
            with self._cache_lock:
                self.cache_hits += 1
            return entry.review
        raise Unavailable(f"Kubernetes API cannot review the token: {why}")

    def _store(self, key: str, token: str, review: Review) -> None:
        now = self._clock()
        expiry = token_expiry(token)
        valid_until = now + self.cache_ttl if expiry is None else expiry
        ttl = self.cache_ttl if review.ok else min(self.cache_ttl, NEGATIVE_TTL_SECONDS)
        with self._cache_lock:
            self._cache[key] = _Entry(review, min(now + ttl, valid_until), valid_until)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    # --- blocking part, in the pool -------------------------------------------------------

    def _review_blocking(self, token: str) -> Review:
        self.api_calls += 1
        # The read may take longer than the waiter's deadline so that the waiter, not the
        # socket, answers first ("no answer within …"); the thread is freed soon after.
        timeout = (self.timeout, 2 * self.timeout)
        body = k8s_client.V1TokenReview(
            api_version="authentication.k8s.io/v1",
            kind="TokenReview",
            spec=k8s_client.V1TokenReviewSpec(token=token, audiences=[self.audience]),
        )
        try:
            response: Any = k8s_client.AuthenticationV1Api(self._api).create_token_review(
                body, _preload_content=False, _request_timeout=timeout
            )
            answer = json.loads(response.data)
        except ApiException as error:
            raise Unavailable(f"TokenReview answered {error.status} {error.reason}") from None
        except ValueError:
            raise Unavailable("TokenReview answer is not JSON") from None
        except Exception as error:  # urllib3 connection errors and timeouts
            raise Unavailable(f"TokenReview failed: {type(error).__name__}") from None
        status = answer.get("status") if isinstance(answer, dict) else None
        if not isinstance(status, dict):
            raise Unavailable("TokenReview answer has no status")
        if status.get("authenticated") is not True:
            error_text = status.get("error")
            return Review(ok=False, detail=f"token not authenticated: {error_text or 'no reason'}")
        audiences = status.get("audiences")
        if isinstance(audiences, list) and self.audience not in audiences:
            return Review(ok=False, detail=f"token is not for audience {self.audience}")
        user = status.get("user") if isinstance(status.get("user"), dict) else {}
        assert isinstance(user, dict)
        username = user.get("username") if isinstance(user.get("username"), str) else ""
        assert isinstance(username, str)
        if username != self.username:
            return Review(ok=False, username=username, detail=f"{username} is not the agent")
        extra = user.get("extra")
        pod = _first(extra, POD_NAME_EXTRA)
        node = _first(extra, NODE_NAME_EXTRA) or self._pod_node(pod, _first(extra, POD_UID_EXTRA))
        if not node:
            return Review(ok=False, username=username, detail="token is not bound to a pod")
        return Review(ok=True, username=username, node=node, pod=pod)

    def _pod_node(self, pod: str, uid: str) -> str:
        if not pod:
            return ""
        key = uid or f"{self.namespace}/{pod}"
        with self._pods_lock:
            cached = self._pods.get(key)
        if cached is not None:
            return cached
        timeout = (self.timeout, self.timeout)
        try:
            response: Any = k8s_client.CoreV1Api(self._api).read_namespaced_pod(
                pod, self.namespace, _preload_content=False, _request_timeout=timeout
            )
            body = json.loads(response.data)
        except ApiException as error:
            if error.status == 404:
                return ""  # the pod is gone: its token speaks for no node
            raise Unavailable(f"reading pod {pod} answered {error.status}") from None
        except Exception as error:
            raise Unavailable(f"reading pod {pod} failed: {type(error).__name__}") from None
        spec = body.get("spec") if isinstance(body, dict) else None
        meta = body.get("metadata") if isinstance(body, dict) else None
        node = spec.get("nodeName") if isinstance(spec, dict) else None
        if not isinstance(node, str) or not node:
            return ""
        if uid and isinstance(meta, dict) and meta.get("uid") != uid:
            return ""  # a new pod under the old name: the token was for the old one
        with self._pods_lock:
            self._pods[key] = node
            while len(self._pods) > self.cache_size:
                self._pods.popitem(last=False)
        return node
