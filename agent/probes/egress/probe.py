"""Egress probe: can this node reach an HTTPS endpoint, and if not, exactly where does it break.

One probe walks the phases a workload's HTTPS request goes through, timing each one,
each in its own module of this package:

- `resolve` (resolve.py): the system resolver, as workloads resolve.
- `connect` (connect.py): TCP to each resolved address in order until one accepts.
- `proxy_connect` (proxy_connect.py): `CONNECT host:port` through an HTTP proxy.
- `tls` (tls.py): TLS with SNI and hostname verification.
- `request`, `transfer` (http.py): an HTTP/1.1 GET, up to the response head, then the body.

Every outcome is an EgressResult; nothing raises. Each phase module says how its errors
map to the reasons of DESIGN.md §4. The total deadline (target.timeout, else
egress.timeout) expiring → `dns_timeout` in resolve, `connect_timeout` in connect, else
`timeout`, with the phase it expired in; an error nobody foresaw becomes the phase's
generic reason.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence

from agent.config import EgressConfig, EgressTarget
from agent.probes.egress.connect import connect
from agent.probes.egress.http import fetch
from agent.probes.egress.proxy_connect import ProxyStatus, proxy_connect
from agent.probes.egress.resolve import finish_local_dns, resolve, resolve_quietly
from agent.probes.egress.state import READ_SIZE, Failure, ProbeState, fail, format_sockaddr
from agent.probes.egress.tls import handshake
from agent.probes.proxy_env import select_proxy
from agent.probes.results import DnsResult, EgressResult, FailureReason, Phase

__all__ = ["probe_target", "probe_targets"]

_DEADLINE_REASONS: dict[Phase, FailureReason] = {
    "resolve": "dns_timeout",
    "connect": "connect_timeout",
}


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
    state = ProbeState(target, config, result, deadline_at=loop.time() + budget)
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
                fail(
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
        except Failure as failure:
            state.stop()
            if isinstance(failure, ProxyStatus) and not result.proxy_connect_status:
                result.proxy_connect_status = failure.status
            if result.reason is None:
                fail(result, failure.reason, failure.phase, failure.message)
        except Exception as error:  # a bug or an error we did not foresee: still data
            phase = state.phase or state.last_phase or "resolve"
            state.stop()
            if result.reason is None:
                fail(result, _unexpected_reason(phase), phase, f"{type(error).__name__}: {error}")
        if state.dns_task is not None:
            result.dns = await finish_local_dns(state)
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


def _close(state: ProbeState) -> None:
    if state.writer is not None:
        state.writer.transport.abort()
        state.writer = None
    for sock in state.sockets:
        sock.close()
    state.sockets.clear()


async def _probe(state: ProbeState) -> None:
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
        raise Failure("proxy_connect_failed", "proxy_connect", selection.error)
    proxy = selection.proxy
    state.proxy = proxy
    if proxy is not None:
        result.proxy_used = True
        result.proxy = proxy.display
        # Not required when proxied, but reported: a node whose DNS cannot see the
        # target breaks the moment the proxy is bypassed.
        state.dns_task = asyncio.create_task(resolve_quietly(state, target.host, target.port))

    state.start("resolve")
    if proxy is None:
        infos, dns = await resolve(state, target.host, target.port, target.family)
        result.dns = dns
        if dns.reason is not None:
            raise Failure(dns.reason, "resolve", dns.message)
    else:
        infos, dns = await resolve(state, proxy.host, proxy.port, "any")
        if dns.reason is not None:
            raise Failure(dns.reason, "resolve", f"proxy {proxy.display}: {dns.message}")
    state.stop()

    state.start("connect")
    sock, sockaddr = await connect(state, infos)
    state.stop()
    state.sockaddr, state.family = sockaddr, sock.family
    result.connected_address = format_sockaddr(sockaddr)
    if proxy is None and result.dns is not None:
        result.dns.family = "ipv6" if sock.family == socket.AF_INET6 else "ipv4"
    reader, writer = await asyncio.open_connection(sock=sock, limit=READ_SIZE)
    state.sockets.remove(sock)
    state.writer = writer

    if proxy is not None:
        state.start("proxy_connect")
        status = await proxy_connect(reader, writer, proxy, target.host, target.port)
        result.proxy_connect_status = status
        state.stop()

    state.start("tls")
    await handshake(state, writer)
    state.stop()

    await fetch(state, reader, writer)
