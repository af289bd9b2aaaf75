"""How the agent proves who it is to the collector: the channel's TLS and the bearer token.

The token file (a projected ServiceAccount token) is rotated by the kubelet, so it is
read again before every call; a missing or unreadable file sends no token, and the
collector answers UNAUTHENTICATED, which the client treats as retryable.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from agent.config import CollectorEndpoint, CollectorTls, ConfigError

log = logging.getLogger(__name__)

# A projected token is about 1 KiB; anything far larger is not a token.
MAX_TOKEN_BYTES = 16 * 1024


def check_files(endpoint: CollectorEndpoint, source: str) -> None:
    """Every TLS and token file the agent will read exists now; ConfigError naming the key."""
    tls = endpoint.tls
    for key, path in (
        ("collector.tls.ca_file", tls.ca_file),
        ("collector.tls.cert_file", tls.cert_file),
        ("collector.tls.key_file", tls.key_file),
        ("collector.token_file", endpoint.token_file),
    ):
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"{source}: key '{key}': cannot read {path}")


def client_ssl_context(tls: CollectorTls) -> ssl.SSLContext | None:
    """The TLS context of the collector channel, or None for plaintext (loopback, demo).

    Verifies the collector against `ca_file` (else the system store), offers only HTTP/2
    (ALPN "h2", as gRPC requires) and presents the client certificate when configured.
    """
    if not tls.enabled:
        return None
    context = ssl.create_default_context(
        cafile=str(tls.ca_file) if tls.ca_file is not None else None
    )
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    context.set_alpn_protocols(["h2"])
    return context


def verification_name(tls: CollectorTls) -> str | None:
    """The name the collector's certificate must carry when it is not the address's host."""
    return tls.server_name


def read_token(path: Path | None) -> str | None:
    """The current token, or None (logged) when there is none to send."""
    if path is None:
        return None
    try:
        data = path.read_bytes()[: MAX_TOKEN_BYTES + 1]
    except OSError as error:
        log.warning("cannot read token file %s: %s", path, error.strerror)
        return None
    token = data.decode("ascii", "replace").strip()
    if not token or len(data) > MAX_TOKEN_BYTES:
        log.warning("token file %s is empty or not a token", path)
        return None
    return token


def call_metadata(path: Path | None) -> tuple[tuple[str, str], ...] | None:
    token = read_token(path)
    return None if token is None else (("authorization", f"Bearer {token}"),)
