"""Who is reporting: the bearer token of a Report call, checked per `auth.mode`.

`none` lets anyone report for any node (demo, loopback); `token-file` admits whoever
holds the one shared token (any node: a standalone cluster trusts its token holders);
`kubernetes` admits only the agents' ServiceAccount and binds each token to the node
its pod runs on, so an agent can speak for its own node and no other. docs/security.md
says what each mode proves.

Failures carry the rejection reason they are counted under and the gRPC status the
caller answers with; the token itself never appears in a message.

Report runs on gRPC handler threads (collector/ingest.py): `authenticate_cached` answers
there without the event loop whenever it can (always for `none` and `token-file`, from
the TokenReview cache for `kubernetes`); only a token not yet reviewed takes the async
`authenticate` on the loop.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
from kubernetes.client import Configuration

from collector.config import AuthConfig, ConfigError, KubernetesConfig
from collector.kube.tokenreview import (
    Review,
    TokenReviewer,
    Unavailable,
    load_api_configuration,
)

log = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 16 * 1024
ANY_NODE = ""


@dataclass(frozen=True)
class Identity:
    """An authenticated caller; `node` is the one node it may report for (ANY_NODE: any)."""

    principal: str
    node: str = ANY_NODE

    def may_report(self, node_name: str) -> bool:
        return self.node == ANY_NODE or self.node == node_name


class AuthFailure(Exception):
    """Refused before the report is looked at. `reason` is None for a retryable outage."""

    def __init__(self, code: grpc.StatusCode, reason: str | None, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.reason = reason
        self.detail = detail


def unauthenticated(detail: str) -> AuthFailure:
    return AuthFailure(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", detail)


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The token of the one `authorization: Bearer` header; raises AuthFailure otherwise."""
    values = [v for k, v in metadata or () if k.lower() == "authorization"]
    if not values:
        raise unauthenticated("no authorization metadata")
    if len(values) > 1:
        raise unauthenticated("more than one authorization header")
    value = values[0]
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("authorization is not a Bearer token")
    if len(token) > MAX_TOKEN_BYTES:
        raise unauthenticated("token too long")
    return token


class Authenticator(Protocol):
    mode: str

    async def authenticate(
        self, metadata: Sequence[tuple[str, str | bytes]] | None
    ) -> Identity: ...

    def authenticate_cached(
        self, metadata: Sequence[tuple[str, str | bytes]] | None
    ) -> Identity | None:
        """The answer without waiting (any thread): an Identity, AuthFailure, or None when
        only `authenticate` on the event loop can tell."""
        ...

    def close(self) -> None: ...


ANONYMOUS = Identity(principal="anonymous")


class NoAuth:
    mode = "none"

    async def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Identity:
        return ANONYMOUS

    def authenticate_cached(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Identity:
        return ANONYMOUS

    def close(self) -> None:
        pass


class SharedTokenAuth:
    """One shared secret from a file, re-read when the file changes (rotation)."""

    mode = "token-file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._token = b""
        try:
            self._reload()
        except OSError as error:
            raise ConfigError(f"auth.token_file: cannot read {path}: {error.strerror}") from None
        if not self._token:
            raise ConfigError(f"auth.token_file: {path} is empty")

    def _reload(self) -> None:
        st = os.stat(self.path)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            token = self.path.read_bytes().strip()
            # Token before stamp: a handler thread that sees the new stamp sees the new
            # token (two threads re-reading one rotation both store the same bytes).
            if token:  # an empty file mid-rotation keeps the previous token
                self._token = token
            self._stamp = stamp

    async def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Identity:
        return self.authenticate_cached(metadata)

    def authenticate_cached(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Identity:
        # A stat and a compare: cheap enough for any thread, no event loop needed.
        token = bearer_token(metadata)
        try:
            self._reload()
        except OSError as error:
            log.warning("auth: keeping the current token, cannot read %s: %s", self.path, error)
        # Constant time: how much of a guess matched must not show in the answer time.
        if not hmac.compare_digest(token.encode(), self._token):
            raise unauthenticated("wrong token")
        return Identity(principal="token-file")

    def close(self) -> None:
        pass


class KubernetesAuth:
    """TokenReview per (new) token; the pod's node is the only node it may report for."""

    mode = "kubernetes"

    def __init__(self, reviewer: TokenReviewer) -> None:
        self.reviewer = reviewer

    async def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Identity:
        token = bearer_token(metadata)
        try:
            review = await self.reviewer.review(token)
        except Unavailable as error:
            raise AuthFailure(grpc.StatusCode.UNAVAILABLE, None, str(error)) from None
        return self._identity(review)

    def authenticate_cached(
        self, metadata: Sequence[tuple[str, str | bytes]] | None
    ) -> Identity | None:
        review = self.reviewer.cached(bearer_token(metadata))
        return None if review is None else self._identity(review)

    @staticmethod
    def _identity(review: Review) -> Identity:
        if not review.ok:
            raise unauthenticated(review.detail)
        return Identity(principal=review.pod or review.username, node=review.node)

    def close(self) -> None:
        self.reviewer.close()


def build_authenticator(
    auth: AuthConfig,
    kubernetes: KubernetesConfig,
    *,
    kube_configuration: Configuration | None = None,
) -> Authenticator:
    """The authenticator for `auth.mode`; raises ConfigError naming the key."""
    if auth.mode == "none":
        return NoAuth()
    if auth.mode == "token-file":
        assert auth.token_file is not None  # the config model requires it
        return SharedTokenAuth(auth.token_file)
    try:
        configuration = load_api_configuration(
            kubernetes.mode, kubernetes.kubeconfig, kube_configuration
        )
    except Exception as error:  # ConfigException, OSError: no usable API
        raise ConfigError(f"auth.mode kubernetes: no Kubernetes API: {error}") from None
    return KubernetesAuth(
        TokenReviewer(
            configuration,
            service_account=auth.service_account,
            audience=auth.audience,
            cache_ttl=auth.cache_ttl,
            cache_size=auth.cache_size,
            timeout=auth.review_timeout,
        )
    )
