"""Egress probe: can this node reach an HTTPS endpoint, and if not, exactly where does it break.

One probe walks the phases a workload's HTTPS request goes through, timing each one:

- `resolve`: the system resolver (getaddrinfo, in a dedicated thread pool so that a hung
  resolver never starves the loop's default executor), as workloads resolve. Through a
  proxy this is the resolution of the proxy's own name; the target's name is still
  resolved locally and reported in `result.dns`, but a failure there does not fail the
  target (the proxy resolves it).
- `connect`: TCP to each resolved address in order until one accepts.
- `proxy_connect`: `CONNECT host:port` through an HTTP proxy (h11), with
  `Proxy-Authorization: Basic` when the proxy URL has credentials.
- `tls`: TLS with SNI and hostname verification against the OpenSSL default trust store
  (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured) plus `egress.ca_file`.
- `request`: an HTTP/1.1 GET (h11) up to the parsed response head; `time_to_first_byte`.
- `transfer`: the body (at most 1 MiB is read).

Every outcome is an EgressResult; nothing raises. Reasons (DESIGN.md §4) and the
decisions where the enum leaves room:

- getaddrinfo EAI_NONAME / EAI_NODATA → `dns_nxdomain`; EAI_AGAIN is glibc's answer both
  to "no DNS server answered" and to SERVFAIL, so dnspython asks the same servers once
  more to tell `dns_timeout` from `dns_error`; anything else → `dns_error`.
- ECONNREFUSED → `connect_refused`; ENETUNREACH/EHOSTUNREACH → `network_unreachable`.
  When several addresses fail, a refusal wins (the host was reached), else the first
  error. A connect failure to the proxy itself is reported with these same reasons; the
  message names the proxy.
- CONNECT answered 407 → `proxy_auth_required` (so is 401: tinyproxy answers wrong
  credentials with it, and a 401 to CONNECT can only come from the proxy);
  500/502/503/504 → `proxy_connect_failed` (the proxy could not reach the origin:
  squid says 503, tinyproxy 500 "Unable to connect"); any other non-2xx →
  `proxy_denied`; the proxy closing the connection or answering garbage before a status
  → `proxy_connect_failed`.
- Certificate verification: unknown CA / self-signed → `tls_untrusted`, name or IP
  mismatch → `tls_hostname_mismatch`, expired or not yet valid → `tls_expired`, any other
  handshake error → `tls_handshake_failed`. After a verification failure a second
  handshake without verification fetches the presented certificate, so subject, issuer,
  fingerprint and validity are reported on failure too.
- An origin status outside `expect_status` (or a status listed in `require_header_for`
  without that header) → `http_unexpected_status`; so is a server that closes the
  connection or speaks something other than HTTP/1.1 instead of answering (status 0).
- The total deadline (target.timeout, else egress.timeout) expiring → `dns_timeout` in
  resolve, `connect_timeout` in connect, else `timeout`, with the phase it expired in.
"""

from __future__ import annotations

import _ssl
import asyncio
import contextlib
import errno
import os
import re
import socket
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

from agent.config import EgressConfig, EgressTarget
from agent.probes.proxy_env import ProxyEndpoint, select_proxy
from agent.probes.results import DnsResult, EgressResult, FailureReason, Phase
from agent.probes.tls_facts import certificate_from_der

__all__ = ["USER_AGENT", "probe_target", "probe_targets"]

USER_AGENT = "preflight-agent"
MAX_BODY_BYTES = 1 << 20
_READ_SIZE = 65536

# getaddrinfo blocks a thread for as long as the resolver waits (timeout × attempts in
# resolv.conf); the default executor has only cpu+4 threads, so a black-holed DNS server
# would serialise the targets. Threads are created on demand up to this bound.
_RESOLVER_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="egress-resolve")

_DEADLINE_REASONS: dict[Phase, FailureReason] = {
    "resolve": "dns_timeout",
    "connect": "connect_timeout",
}
_FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
_PROXY_ORIGIN_FAILURES = frozenset({500, 502, 503, 504})

# OpenSSL X509_V_ERR_* codes (x509_vfy.h).
_UNTRUSTED_CODES = frozenset({2, 18, 19, 20, 21, 27, 28})
_EXPIRED_CODES = frozenset({9, 10})
_MISMATCH_CODES = frozenset({62, 64})


class _Failure(Exception):
    def __init__(self, reason: FailureReason, phase: Phase, message: str) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.phase: Phase = phase
        self.message = message


@dataclass
class _State:
    """What one probe knows so far; shared with the deadline and error handlers."""

    target: EgressTarget
    config: EgressConfig
    result: EgressResult
    deadline_at: float
    phase: Phase | None = None
    phase_started: float = 0.0
    last_phase: Phase | None = None
    writer: asyncio.StreamWriter | None = None
    sockets: list[socket.socket] = field(default_factory=list)
    dns_task: asyncio.Task[DnsResult] | None = None
    # Where the TLS connection goes, kept for the second (unverified) handshake.
    sockaddr: Any = None
    family: int = socket.AF_UNSPEC
    proxy: ProxyEndpoint | None = None

    def start(self, phase: Phase) -> None:
        self.phase = phase
        self.last_phase = phase
        self.phase_started = time.perf_counter()

    def stop(self) -> None:
        if self.phase is None:
            return
        elapsed = time.perf_counter() - self.phase_started
        phases = self.result.phases
        phases[self.phase] = phases.get(self.phase, 0.0) + elapsed
        self.phase = None

    def remaining(self) -> float:
        return self.deadline_at - asyncio.get_running_loop().time()


def _fail(result: EgressResult, reason: FailureReason, phase: Phase, message: str) -> None:
    result.up = False
    result.reason = reason
    result.failed_phase = phase
    result.message = message


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _host_header(host: str, port: int) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == 443 else f"{name}:{port}"


def _format_sockaddr(sockaddr: Any) -> str:
    return _authority(str(sockaddr[0]), int(sockaddr[1]))


async def probe_targets(
    targets: Sequence[EgressTarget], config: EgressConfig
) -> list[EgressResult]:
    """Every target probed concurrently; results in the order of `targets`."""
    return list(await asyncio.gather(*(probe_target(t, config) for t in targets)))


async def probe_target(target: EgressTarget, config: EgressConfig) -> EgressResult:
    """One target probed under its total deadline. Never raises (except cancellation)."""
    loop = asyncio.get_running_loop()
    budget = target.timeout or config.timeout
    result = EgressResult(target=target.name, url=target.url, started_at=time.time())
    state = _State(target, config, result, deadline_at=loop.time() + budget)
    started = time.perf_counter()
    try:
        try:
            async with asyncio.timeout_at(state.deadline_at):
                await _probe(state)
        except TimeoutError:
            phase = state.phase or state.last_phase or "resolve"
            state.stop()
            if result.reason is None:
                reason = _DEADLINE_REASONS.get(phase, "timeout")
                _fail(
                    result,
                    reason,
                    phase,
                    f"no progress within the {budget:g}s deadline (during {phase})",
                )
                if phase == "resolve" and result.dns is None and state.proxy is None:
                    result.dns = DnsResult(
                        reason="dns_timeout",
                        message=f"no answer for {target.host} within {budget:g}s",
                        duration_seconds=result.phases.get("resolve", 0.0),
                    )
        except _Failure as failure:
            state.stop()
            if isinstance(failure, _ProxyStatus) and not result.proxy_connect_status:
                result.proxy_connect_status = failure.status
            if result.reason is None:
                _fail(result, failure.reason, failure.phase, failure.message)
        except Exception as error:  # a bug or an error we did not foresee: still data
            phase = state.phase or state.last_phase or "resolve"
            state.stop()
            if result.reason is None:
                _fail(result, _unexpected_reason(phase), phase, f"{type(error).__name__}: {error}")
        if state.dns_task is not None:
            result.dns = await _finish_local_dns(state)
    finally:
        _close(state)
        if state.dns_task is not None and not state.dns_task.done():
            state.dns_task.cancel()
    result.total_seconds = time.perf_counter() - started
    return result


def _unexpected_reason(phase: Phase) -> FailureReason:
    reasons: dict[Phase, FailureReason] = {
        "resolve": "dns_error",
        "connect": "network_unreachable",
        "proxy_connect": "proxy_connect_failed",
        "tls": "tls_handshake_failed",
    }
    return reasons.get(phase, "http_unexpected_status")


def _close(state: _State) -> None:
    if state.writer is not None:
        state.writer.transport.abort()
        state.writer = None
    for sock in state.sockets:
        sock.close()
    state.sockets.clear()


async def _finish_local_dns(state: _State) -> DnsResult:
    """The local resolution of a proxied target, given what is left of the deadline."""
    task = state.dns_task
    assert task is not None
    done, _ = await asyncio.wait({task}, timeout=max(state.remaining(), 0.0))
    if task in done:
        return task.result()
    task.cancel()
    return DnsResult(
        reason="dns_timeout",
        message=f"no local answer for {state.target.host} before the deadline",
        duration_seconds=(state.target.timeout or state.config.timeout),
    )


async def _probe(state: _State) -> None:
    target, config, result = state.target, state.config, state.result
    selection = select_proxy(
        target.host,
        target.port,
        target.proxy,
        config.proxy.https_proxy,
        config.proxy.no_proxy,
    )
    if selection.error:
        # The enum has no "configuration" reason; the proxy is what could not be used.
        raise _Failure("proxy_connect_failed", "proxy_connect", selection.error)
    proxy = selection.proxy
    state.proxy = proxy
    if proxy is not None:
        result.proxy_used = True
        result.proxy = proxy.display
        # Not required when proxied, but reported: a node whose DNS cannot see the
        # target breaks the moment the proxy is bypassed.
        state.dns_task = asyncio.create_task(_resolve_quietly(state, target.host, target.port))

    state.start("resolve")
    if proxy is None:
        infos, dns = await _resolve(state, target.host, target.port, target.family)
        result.dns = dns
        if dns.reason is not None:
            raise _Failure(dns.reason, "resolve", dns.message)
    else:
        infos, dns = await _resolve(state, proxy.host, proxy.port, "any")
        if dns.reason is not None:
            raise _Failure(dns.reason, "resolve", f"proxy {proxy.display}: {dns.message}")
    state.stop()

    state.start("connect")
    sock, sockaddr = await _connect(state, infos)
    state.stop()
    state.sockaddr, state.family = sockaddr, sock.family
    result.connected_address = _format_sockaddr(sockaddr)
    if proxy is None and result.dns is not None:
        result.dns.family = "ipv6" if sock.family == socket.AF_INET6 else "ipv4"
    reader, writer = await asyncio.open_connection(sock=sock, limit=_READ_SIZE)
    state.sockets.remove(sock)
    state.writer = writer

    if proxy is not None:
        state.start("proxy_connect")
        status = await _proxy_connect(reader, writer, proxy, target.host, target.port)
        result.proxy_connect_status = status
        state.stop()

    state.start("tls")
    await _handshake(state, writer)
    state.stop()

    await _request(state, reader, writer)


async def _resolve_quietly(state: _State, host: str, port: int) -> DnsResult:
    started = time.perf_counter()
    try:
        return (await _resolve(state, host, port, state.target.family))[1]
    except Exception as error:
        return DnsResult(
            reason="dns_error",
            message=f"{type(error).__name__}: {error}",
            duration_seconds=time.perf_counter() - started,
        )


async def _resolve(
    state: _State, host: str, port: int, family: str
) -> tuple[list[tuple[Any, ...]], DnsResult]:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        infos = await loop.run_in_executor(
            _RESOLVER_POOL,
            socket.getaddrinfo,
            host,
            port,
            _FAMILIES[family],
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
        )
    except socket.gaierror as error:
        elapsed = time.perf_counter() - started
        reason, message = await _classify_gaierror(state, error, host, family, elapsed)
        return [], DnsResult(
            reason=reason, message=message, duration_seconds=time.perf_counter() - started
        )
    except UnicodeError:
        return [], DnsResult(
            reason="dns_error",
            message=f"{host!r} is not a valid host name",
            duration_seconds=time.perf_counter() - started,
        )
    seen: set[str] = set()
    unique = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.add(address)
            unique.append(info)
    first_family = unique[0][0] if unique else socket.AF_INET
    return unique, DnsResult(
        addresses=[str(info[4][0]) for info in unique],
        family="ipv6" if first_family == socket.AF_INET6 else "ipv4",
        duration_seconds=time.perf_counter() - started,
    )


async def _classify_gaierror(
    state: _State, error: socket.gaierror, host: str, family: str, elapsed: float
) -> tuple[FailureReason, str]:
    code = error.errno
    wanted = {"ipv4": "IPv4 ", "ipv6": "IPv6 "}.get(family, "")
    if code == socket.EAI_NONAME:
        return "dns_nxdomain", f"{host} does not exist (NXDOMAIN or no {wanted}address)"
    nodata = {getattr(socket, "EAI_NODATA", None), getattr(socket, "EAI_ADDRFAMILY", None)}
    if code in nodata - {None}:
        return "dns_nxdomain", f"{host} has no {wanted}address"
    if code == socket.EAI_AGAIN:
        return await _explain_eai_again(state, host, family, elapsed)
    return "dns_error", f"resolving {host}: {error.strerror}"


async def _explain_eai_again(
    state: _State, host: str, family: str, elapsed: float
) -> tuple[FailureReason, str]:
    """EAI_AGAIN means "no answer" or "SERVFAIL"; ask the same servers to tell which."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    budget = min(2.0, state.remaining() - 0.05)
    if budget <= 0.1:
        if elapsed >= 1.0:
            return (
                "dns_timeout",
                f"no DNS answer for {host} (resolver gave up after {elapsed:.1f}s)",
            )
        return "dns_error", f"temporary failure resolving {host}"
    try:
        resolver = dns.asyncresolver.Resolver()
        await resolver.resolve(host, "AAAA" if family == "ipv6" else "A", lifetime=budget)
    except dns.resolver.LifetimeTimeout:
        return "dns_timeout", f"no DNS server answered for {host}"
    except dns.resolver.NoNameservers as error:
        return "dns_error", f"DNS servers failed for {host}: {error}"
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return "dns_nxdomain", f"{host} does not exist"
    except dns.exception.DNSException as error:
        return "dns_error", f"resolving {host}: {error}"
    return "dns_error", f"temporary failure resolving {host} (EAI_AGAIN); the server answers now"


async def _connect(state: _State, infos: list[tuple[Any, ...]]) -> tuple[socket.socket, Any]:
    loop = asyncio.get_running_loop()
    errors: list[tuple[Any, OSError]] = []
    for family, socktype, proto, _, sockaddr in infos:
        try:
            # Inside the try: creating an AF_INET6 socket fails where IPv6 is disabled.
            sock = socket.socket(family, socktype, proto)
        except OSError as error:
            errors.append((sockaddr, error))
            continue
        state.sockets.append(sock)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
        except OSError as error:
            state.sockets.remove(sock)
            sock.close()
            errors.append((sockaddr, error))
            continue
        return sock, sockaddr
    where = "proxy " if state.proxy is not None else ""
    details = "; ".join(f"{_format_sockaddr(a)}: {e.strerror or e}" for a, e in errors)
    if any(e.errno == errno.ECONNREFUSED for _, e in errors):
        raise _Failure("connect_refused", "connect", f"{where}connection refused ({details})")
    first = errors[0][1] if errors else None
    if first is not None and first.errno in (errno.ETIMEDOUT,):
        raise _Failure("connect_timeout", "connect", f"{where}connect timed out ({details})")
    if first is not None and first.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        raise _Failure("network_unreachable", "connect", f"{where}no route ({details})")
    raise _Failure("network_unreachable", "connect", f"{where}cannot connect ({details})")


async def _proxy_connect(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    proxy: ProxyEndpoint,
    host: str,
    port: int,
) -> int:
    authority = _authority(host, port)
    headers = [("Host", authority), ("User-Agent", USER_AGENT)]
    if proxy.authorization is not None:
        headers.append(("Proxy-Authorization", proxy.authorization))
    conn = h11.Connection(our_role=h11.CLIENT)
    writer.write(conn.send(h11.Request(method="CONNECT", target=authority, headers=headers)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    try:
        await writer.drain()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(_READ_SIZE)
                if not data:
                    raise _Failure(
                        "proxy_connect_failed",
                        "proxy_connect",
                        f"proxy {proxy.display} closed the connection without answering CONNECT",
                    )
                conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                break
            raise _Failure(
                "proxy_connect_failed",
                "proxy_connect",
                f"proxy {proxy.display} sent {type(event).__name__} instead of a status",
            )
    except h11.RemoteProtocolError as error:
        raise _Failure(
            "proxy_connect_failed",
            "proxy_connect",
            f"proxy {proxy.display} answered CONNECT with invalid HTTP: {error}",
        ) from None
    except OSError as error:
        raise _Failure(
            "proxy_connect_failed",
            "proxy_connect",
            f"proxy {proxy.display} dropped the connection: {error.strerror or error}",
        ) from None
    status = event.status_code
    phrase = event.reason.decode("latin-1", "replace")
    said = f"proxy {proxy.display} answered CONNECT {authority} with {status} {phrase}".rstrip()
    if 200 <= status < 300:
        if conn.trailing_data[0]:
            raise _Failure("proxy_connect_failed", "proxy_connect", f"{said}, then sent data")
        return status
    if status in (401, 407):
        raise _ProxyStatus("proxy_auth_required", status, said)
    if status in _PROXY_ORIGIN_FAILURES:
        raise _ProxyStatus("proxy_connect_failed", status, f"{said}: it could not reach the origin")
    raise _ProxyStatus("proxy_denied", status, said)


class _ProxyStatus(_Failure):
    """A proxy's non-2xx answer to CONNECT; carries the status for the result."""

    def __init__(self, reason: FailureReason, status: int, message: str) -> None:
        super().__init__(reason, "proxy_connect", message)
        self.status = status


_CONTEXT_CACHE: dict[tuple[Any, ...], ssl.SSLContext] = {}


def _verifying_context(config: EgressConfig) -> ssl.SSLContext:
    """The default OpenSSL trust store plus egress.ca_file; cached while inputs are unchanged."""
    ca_file = config.ca_file
    try:
        ca_mtime = os.stat(ca_file).st_mtime_ns if ca_file is not None else None
    except OSError as error:
        raise _Failure(
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
                raise _Failure(
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


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _classify_verification(error: ssl.SSLCertVerificationError) -> FailureReason:
    code = error.verify_code
    if code in _MISMATCH_CODES:
        return "tls_hostname_mismatch"
    if code in _EXPIRED_CODES:
        return "tls_expired"
    if code in _UNTRUSTED_CODES:
        return "tls_untrusted"
    return "tls_handshake_failed"


async def _handshake(state: _State, writer: asyncio.StreamWriter) -> None:
    target, result = state.target, state.result
    context = _verifying_context(state.config)
    try:
        await writer.start_tls(context, server_hostname=target.host)
    except ssl.SSLCertVerificationError as error:
        reason = _classify_verification(error)
        state.stop()
        _fail(result, reason, "tls", f"certificate of {target.host}: {error.verify_message}")
        await _fetch_presented_certificate(state)
        if result.certificate is not None and result.certificate.issuer:
            result.message += f" (issuer {result.certificate.issuer})"
        raise _Failure(reason, "tls", result.message) from None
    except ssl.SSLError as error:
        raise _Failure(
            "tls_handshake_failed", "tls", f"TLS handshake with {target.host}: {error}"
        ) from None
    except (OSError, EOFError) as error:
        raise _Failure(
            "tls_handshake_failed",
            "tls",
            f"connection closed during the TLS handshake with {target.host}: {error or 'EOF'}",
        ) from None
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if der:
        with contextlib.suppress(ValueError):
            result.certificate = certificate_from_der(
                der, verified=True, tls_version=ssl_object.version() or ""
            )
        if result.certificate is not None and state.config.ca_file is not None:
            result.certificate.trusted_by_extra_ca = _trusted_by_extra_ca(
                ssl_object, state.config.ca_file
            )


async def _fetch_presented_certificate(state: _State) -> None:
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
                reader, writer = await asyncio.open_connection(sock=sock, limit=_READ_SIZE)
            except BaseException:
                sock.close()
                raise
            if state.proxy is not None:
                await _proxy_connect(
                    reader, writer, state.proxy, state.target.host, state.target.port
                )
            await writer.start_tls(_unverified_context(), server_hostname=state.target.host)
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if der:
                state.result.certificate = certificate_from_der(
                    der, verified=False, tls_version=ssl_object.version() or ""
                )
    except (TimeoutError, OSError, ssl.SSLError, _Failure, ValueError, EOFError):
        pass
    finally:
        if writer is not None:
            writer.transport.abort()


async def _request(
    state: _State, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    target, result = state.target, state.result
    conn = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=target.path,
        headers=[
            ("Host", _host_header(target.host, target.port)),
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Connection", "close"),
        ],
    )
    state.start("request")
    sent_at = time.perf_counter()
    response: h11.Response | None = None
    body_bytes = 0
    try:
        writer.write((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        await writer.drain()
        first_byte = True
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(_READ_SIZE)
                if first_byte and data:
                    result.time_to_first_byte_seconds = time.perf_counter() - sent_at
                    first_byte = False
                conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                response = event
                result.http_status = event.status_code
                state.stop()
                state.start("transfer")
                continue
            if isinstance(event, h11.Data):
                body_bytes += len(event.data)
                if body_bytes >= MAX_BODY_BYTES:
                    break
                continue
            break  # EndOfMessage, ConnectionClosed or PAUSED
    except h11.RemoteProtocolError as error:
        if response is None:
            raise _Failure(
                "http_unexpected_status",
                "request",
                f"{target.host} did not answer with HTTP/1.1: {error}",
            ) from None
        # A truncated body after a valid status: the origin answered, which is what counts.
    except (OSError, ssl.SSLError) as error:
        if response is None:
            raise _Failure(
                "http_unexpected_status",
                "request",
                f"{target.host} dropped the connection before answering: {error}",
            ) from None
    state.stop()
    if response is None:
        raise _Failure(
            "http_unexpected_status",
            "request",
            f"{target.host} closed the connection without an HTTP response",
        )
    _judge_status(target, result, response)


def _judge_status(target: EgressTarget, result: EgressResult, response: h11.Response) -> None:
    status = response.status_code
    if target.expect_status and status not in target.expect_status:
        expected = ", ".join(str(s) for s in target.expect_status)
        _fail(
            result,
            "http_unexpected_status",
            "request",
            f"{target.host} answered {status}; expected {expected}",
        )
        return
    required = target.require_header_for.get(status)
    if required is not None:
        names = {name.decode("latin-1").lower() for name, _ in response.headers}
        if required.lower() not in names:
            _fail(
                result,
                "http_unexpected_status",
                "request",
                f"{target.host} answered {status} without a {required} header",
            )
            return
    result.up = True
    result.reason = None
    result.failed_phase = None
    result.message = ""
