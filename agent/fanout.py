"""Sends every report to every collector replica the collector address resolves to.

Availability is replicas, not consensus (DESIGN.md §2): each replica holds the whole
picture only if every agent reports to every replica. The collector address may be a
headless Service, whose name resolves to one address per collector pod; this module
resolves it (the system resolver, as the rest of the node does), keeps one
ReportClient per address (its own channel, backoff and latest-only pending report),
and resolves again every `resolve_interval`, so a rescheduled replica is found at its
new address. One slow or dead replica never delays another: each client runs on its
own task. An IP literal, or a gRPC target with a scheme (`dns:///`, `unix:`), is one
endpoint and is not resolved here.

Probe plans: each replica answers with the plan its profile gives. The agent adopts a
version the moment a replica answers with a version that replica had not sent before
(the newest plan any replica returns); a replica that keeps answering with its old
version does not pull the agent back, so two replicas in the middle of a rollout never
make the agent flip between plans.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.client import ReportClient
from agent.config import CollectorTls
from preflight.v1 import report_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_RESOLVE_INTERVAL = 30.0


def split_host_port(address: str) -> tuple[str, int] | None:
    """("host", port) of "host:port" or "[v6]:port"; None for a gRPC target with a scheme."""
    if "://" in address or address.startswith(("unix:", "ipv4:", "ipv6:", "dns:")):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def grpc_target(ip: str, port: int) -> str:
    """The target (grpcio's spelling, agent.wire reads it) for one resolved address."""
    return f"ipv6:[{ip}]:{port}" if ":" in ip else f"ipv4:{ip}:{port}"


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`, in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


@dataclass
class Replica:
    """One collector address: its client, the task delivering to it, the plan it last sent."""

    client: ReportClient
    task: asyncio.Task[None] | None = None
    plan_version: str = ""
    acks: int = field(default=0)


class FanoutClient:
    """The agent's `submit` for any number of collector replicas behind one address."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float,
        max_backoff: float,
        on_ack: Callable[[pb.ReportAck], None] | None = None,
        tls: CollectorTls | None = None,
        token_file: Path | None = None,
        resolve_interval: float = DEFAULT_RESOLVE_INTERVAL,
        resolve: Callable[[str, int], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.on_ack = on_ack
        self.tls = tls or CollectorTls()
        self.token_file = token_file
        self.resolve_interval = resolve_interval
        self._resolve = resolve or system_resolve
        self.replicas: dict[str, Replica] = {}
        self._latest: pb.NodeReport | None = None
        parsed = split_host_port(address)
        # A name is resolved here; anything else is handed to gRPC as one endpoint.
        self._name: tuple[str, int] | None = (
            parsed if parsed is not None and not is_ip(parsed[0]) else None
        )
        self._started = False

    @property
    def delivered(self) -> int:
        return sum(r.client.delivered for r in self.replicas.values())

    def _client(self, key: str, target: str | None) -> ReportClient:
        authority = server_name = None
        if self._name is not None:
            host, port = self._name
            # The replicas are one service: its name is the authority, and with TLS
            # the name the certificate must carry unless tls.server_name says otherwise.
            authority = f"{host}:{port}"
            server_name = host
        label = self.address if target is None else f"{self.address} at {key}"
        return ReportClient(
            label,
            timeout=self.timeout,
            max_backoff=self.max_backoff,
            on_ack=lambda ack: self._ack(key, ack),
            tls=self.tls,
            token_file=self.token_file,
            target=target,
            authority=authority,
            server_name=server_name,
        )

    def _ack(self, key: str, ack: pb.ReportAck) -> None:
        replica = self.replicas.get(key)
        if replica is None:
            return  # removed while its call was in flight
        replica.acks += 1
        if self.on_ack is None:
            return
        if ack.plan.version and ack.plan.version == replica.plan_version:
            # Not news from this replica: heartbeat only, the plan in force stays.
            forwarded = pb.ReportAck()
            forwarded.CopyFrom(ack)
            forwarded.ClearField("plan")
            self.on_ack(forwarded)
            return
        replica.plan_version = ack.plan.version
        self.on_ack(ack)

    def _add(self, key: str, target: str | None) -> None:
        replica = Replica(self._client(key, target))
        self.replicas[key] = replica
        if self._latest is not None:
            replica.client.submit(self._copy(self._latest))
        if self._started:
            replica.task = asyncio.create_task(replica.client.run(), name=f"report-to-{key}")
        log.info("collector replica %s added (%d in all)", key, len(self.replicas))

    async def _remove(self, key: str) -> None:
        replica = self.replicas.pop(key)
        if replica.task is not None:
            replica.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replica.task
        await replica.client.close()
        log.info("collector replica %s gone from %s", key, self.address)

    @staticmethod
    def _copy(report: pb.NodeReport) -> pb.NodeReport:
        # Each client stamps sent_at on its own copy while another may be serialising.
        copy = pb.NodeReport()
        copy.CopyFrom(report)
        return copy

    def submit(self, report: pb.NodeReport) -> None:
        """Hands the newest snapshot to every replica; each keeps only its latest."""
        self._latest = report
        for replica in self.replicas.values():
            replica.client.submit(self._copy(report))

    async def refresh(self) -> None:
        """Resolves the name once and adds/removes replicas to match."""
        if self._name is None:
            if not self.replicas:
                self._add(self.address, None)
            return
        host, port = self._name
        try:
            addresses = await asyncio.wait_for(self._resolve(host, port), self.timeout)
        except (OSError, TimeoutError) as error:
            # Keep delivering to the replicas already known; DNS may be back next time.
            log.warning(
                "cannot resolve collector %s (%s); keeping %d", host, error, len(self.replicas)
            )
            return
        if not addresses:
            log.warning("collector %s resolves to nothing; keeping %d", host, len(self.replicas))
            return
        for ip in addresses:
            if ip not in self.replicas:
                self._add(ip, grpc_target(ip, port))
        for ip in [k for k in self.replicas if k not in addresses]:
            await self._remove(ip)

    async def run(self) -> None:
        self._started = True
        await self.refresh()
        try:
            while True:
                await asyncio.sleep(self.resolve_interval)
                await self.refresh()
        finally:
            for key in list(self.replicas):
                task = self.replicas[key].task
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def close(self) -> None:
        for key in list(self.replicas):
            await self._remove(key)
