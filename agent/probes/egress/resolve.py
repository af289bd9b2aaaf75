"""Phase `resolve`: the system resolver (getaddrinfo), as workloads resolve.

getaddrinfo runs in a dedicated thread pool so that a hung resolver never starves the
loop's default executor. Through a proxy the proxy's own name is resolved for the
connection; the target's name is still resolved locally (`resolve_quietly`, reported in
`result.dns`), but a failure there does not fail the target (the proxy resolves it).

getaddrinfo EAI_NONAME / EAI_NODATA → `dns_nxdomain`; EAI_AGAIN is glibc's answer both
to "no DNS server answered" and to SERVFAIL, so the same servers are asked once more
(agent/probes/egress/dns_detail.py, stdlib only) to tell `dns_timeout` from `dns_error`;
anything else → `dns_error`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.probes.egress.dns_detail import explain_eai_again
from agent.probes.egress.state import ProbeState
from agent.probes.results import DnsResult, FailureReason

# getaddrinfo blocks a thread for as long as the resolver waits (timeout × attempts in
# resolv.conf); the default executor has only cpu+4 threads, so a black-holed DNS server
# would serialise the targets. Threads are created on demand up to this bound.
_RESOLVER_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="egress-resolve")


_FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


async def resolve_quietly(state: ProbeState, host: str, port: int) -> DnsResult:
    started = time.perf_counter()
    try:
        return (await resolve(state, host, port, state.target.family))[1]
    except Exception as error:
        return DnsResult(
            reason="dns_error",
            message=f"{type(error).__name__}: {error}",
            duration_seconds=time.perf_counter() - started,
        )


async def resolve(
    state: ProbeState, host: str, port: int, family: str
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
    state: ProbeState, error: socket.gaierror, host: str, family: str, elapsed: float
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
    state: ProbeState, host: str, family: str, elapsed: float
) -> tuple[FailureReason, str]:
    """EAI_AGAIN means "no answer" or "SERVFAIL"; ask the same servers to tell which."""
    budget = min(2.0, state.remaining() - 0.05)
    if budget <= 0.1:
        if elapsed >= 1.0:
            return (
                "dns_timeout",
                f"no DNS answer for {host} (resolver gave up after {elapsed:.1f}s)",
            )
        return "dns_error", f"temporary failure resolving {host}"
    return await explain_eai_again(host, family, budget)


async def finish_local_dns(state: ProbeState) -> DnsResult:
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
