"""Phase `tls`: TLS with SNI and hostname verification.

The trust store is the OpenSSL default (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured) plus
`egress.ca_file`. Certificate verification: unknown CA / self-signed → `tls_untrusted`,
name or IP mismatch → `tls_hostname_mismatch`, expired or not yet valid → `tls_expired`,
any other handshake error → `tls_handshake_failed`. After a verification failure a
second handshake without verification fetches the presented certificate, so subject,
issuer, fingerprint and validity are reported on failure too.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import os
import re
import socket
import ssl
from pathlib import Path
from typing import Any

from agent.config import EgressConfig
from agent.probes.egress.proxy_connect import proxy_connect
from agent.probes.egress.state import READ_SIZE, Failure, ProbeState, fail
from agent.probes.results import FailureReason
from agent.probes.tls_facts import certificate_from_der, certificate_from_peercert

# OpenSSL X509_V_ERR_* codes (x509_vfy.h).
_UNTRUSTED_CODES = frozenset({2, 18, 19, 20, 21, 27, 28})


_EXPIRED_CODES = frozenset({9, 10})


_MISMATCH_CODES = frozenset({62, 64})


_CONTEXT_CACHE: dict[tuple[Any, ...], ssl.SSLContext] = {}


def _verifying_context(config: EgressConfig) -> ssl.SSLContext:
    """The default OpenSSL trust store plus egress.ca_file; cached while inputs are unchanged."""
    ca_file = config.ca_file
    try:
        ca_mtime = os.stat(ca_file).st_mtime_ns if ca_file is not None else None
    except OSError as error:
        raise Failure(
            "tls_handshake_failed", "tls", f"cannot read CA bundle {ca_file}: {error.strerror}"
        ) from None
    key = (
        str(ca_file),
        ca_mtime,
        os.environ.get("SSL_CERT_FILE"),
        os.environ.get("SSL_CERT_DIR"),
    )
    context = _CONTEXT_CACHE.get(key)
    if context is None:
        context = ssl.create_default_context()
        if ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(ca_file))
            except (ssl.SSLError, OSError) as error:
                raise Failure(
                    "tls_handshake_failed", "tls", f"cannot load CA bundle {ca_file}: {error}"
                ) from None
        context.set_alpn_protocols(["http/1.1"])
        if len(_CONTEXT_CACHE) > 16:
            _CONTEXT_CACHE.clear()
        _CONTEXT_CACHE[key] = context
    return context


_ANCHOR_CACHE: dict[tuple[str, int], frozenset[bytes]] = {}


def _extra_anchors(ca_file: Path) -> frozenset[bytes]:
    """DER of every certificate in egress.ca_file; cached while the file is unchanged."""
    try:
        key = (str(ca_file), os.stat(ca_file).st_mtime_ns)
    except OSError:
        return frozenset()
    anchors = _ANCHOR_CACHE.get(key)
    if anchors is None:
        text = ca_file.read_text(errors="replace")
        blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
        anchors = frozenset(ssl.PEM_cert_to_DER_cert(b) for b in blocks)
        if len(_ANCHOR_CACHE) > 16:
            _ANCHOR_CACHE.clear()
        _ANCHOR_CACHE[key] = anchors
    return anchors


def _trusted_by_extra_ca(ssl_object: ssl.SSLObject, ca_file: Path) -> bool:
    """Whether the verified chain ends at a CA of egress.ca_file, not of the system store."""
    # SSLObject.get_verified_chain is public from Python 3.13; 3.11 has it privately.
    get_chain = getattr(ssl_object, "get_verified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_verified_chain", None
    )
    if get_chain is None:
        return False
    chain = get_chain()
    if not chain:
        return False
    anchor = chain[-1].public_bytes(_ssl.ENCODING_DER)
    return bool(anchor in _extra_anchors(ca_file))


_UNVERIFIED: list[ssl.SSLContext] = []


def _unverified_context() -> ssl.SSLContext:
    """One context for reading the certificate a failed handshake presented.

    Built once and without a trust store (it verifies nothing): create_default_context()
    per failure loaded the system's CA bundle every time; the agent with six targets
    failing verification was 5.1 MiB larger for it (docs/performance.md, "Agent footprint").
    """
    if not _UNVERIFIED:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        _UNVERIFIED.append(context)
    return _UNVERIFIED[0]


def _classify_verification(error: ssl.SSLCertVerificationError) -> FailureReason:
    code = error.verify_code
    if code in _MISMATCH_CODES:
        return "tls_hostname_mismatch"
    if code in _EXPIRED_CODES:
        return "tls_expired"
    if code in _UNTRUSTED_CODES:
        return "tls_untrusted"
    return "tls_handshake_failed"


def _forget(error: BaseException) -> None:
    """Drops a failed handshake's traceback and context.

    They form a reference cycle through asyncio's frames that holds the SSL objects
    (about 16 KiB each, outside Python's heap, so the cyclic GC does not hurry): every
    target failing TLS grew the agent by that much per probe until a full collection
    (docs/performance.md, "Agent footprint").
    """
    error.__traceback__ = None
    error.__context__ = None


async def handshake(state: ProbeState, writer: asyncio.StreamWriter) -> None:
    target, result = state.target, state.result
    context = _verifying_context(state.config)
    try:
        await writer.start_tls(context, server_hostname=target.host)
    except ssl.SSLCertVerificationError as error:
        reason = _classify_verification(error)
        _forget(error)
        state.stop()
        fail(result, reason, "tls", f"certificate of {target.host}: {error.verify_message}")
        await _fetch_presented_certificate(state)
        if result.certificate is not None and result.certificate.issuer:
            result.message += f" (issuer {result.certificate.issuer})"
        raise Failure(reason, "tls", result.message) from None
    except ssl.SSLError as error:
        _forget(error)
        raise Failure(
            "tls_handshake_failed", "tls", f"TLS handshake with {target.host}: {error}"
        ) from None
    except (OSError, EOFError) as error:
        _forget(error)
        raise Failure(
            "tls_handshake_failed",
            "tls",
            f"connection closed during the TLS handshake with {target.host}: {error or 'EOF'}",
        ) from None
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if der:
        # Verified: OpenSSL has parsed it already, no certificate library is loaded.
        decoded = ssl_object.getpeercert()
        with contextlib.suppress(ValueError, KeyError):
            result.certificate = (
                certificate_from_peercert(decoded, der, tls_version=ssl_object.version() or "")
                if decoded
                else certificate_from_der(
                    der, verified=True, tls_version=ssl_object.version() or ""
                )
            )
        if result.certificate is not None and state.config.ca_file is not None:
            result.certificate.trusted_by_extra_ca = _trusted_by_extra_ca(
                ssl_object, state.config.ca_file
            )


async def _fetch_presented_certificate(state: ProbeState) -> None:
    """A second handshake, without verification, only to read the certificate presented.

    Bounded by what is left of the deadline; a failure here loses the details, never the
    verification failure already recorded.
    """
    budget = state.remaining() - 0.05
    if budget <= 0.05 or state.sockaddr is None:
        return
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(budget):
            sock = socket.socket(state.family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(sock, state.sockaddr)
                reader, writer = await asyncio.open_connection(sock=sock, limit=READ_SIZE)
            except BaseException:
                sock.close()
                raise
            if state.proxy is not None:
                await proxy_connect(
                    reader, writer, state.proxy, state.target.host, state.target.port
                )
            await writer.start_tls(_unverified_context(), server_hostname=state.target.host)
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if der:
                state.result.certificate = certificate_from_der(
                    der, verified=False, tls_version=ssl_object.version() or ""
                )
    except (TimeoutError, OSError, ssl.SSLError, Failure, ValueError, EOFError) as error:
        _forget(error)
    finally:
        if writer is not None:
            writer.transport.abort()
