"""auth.mode kubernetes: TokenReview and pod lookups against kmock, reports over real gRPC.

The API double answers like an API server (tests/support/kubeauth.py); the collector
is the real service on loopback. Covered: a token bound to its node (node-name extra,
and the pod lookup of clusters before 1.30), a token of another ServiceAccount, of
another audience, garbage, a valid agent claiming another node, the cache (one review
per token), the API down (new tokens UNAVAILABLE within the deadline, verified agents
keep reporting), and the stolen instance id + sequence 2^64-1 attack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from agent.client import ReportClient
from collector.config import AuthConfig, CollectorConfig, KubernetesConfig, ListenConfig
from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc
from tests.support.kubeauth import FakeAuthApi, auth_api
from tests.support.metrics import ascrape, sample

MAX_SEQUENCE = 2**64 - 1


def report(name: str, sequence: int = 1, instance: str = "i1") -> pb.NodeReport:
    message = pb.NodeReport(node_name=name, instance_id=instance, sequence=sequence)
    message.sent_at.GetCurrentTime()
    return message


async def send(
    service: CollectorService, message: pb.NodeReport, token: str | None
) -> pb.ReportAck:
    metadata = None if token is None else (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        return await pb_grpc.CollectorStub(channel).Report(message, timeout=10, metadata=metadata)


async def refused(
    service: CollectorService, message: pb.NodeReport, token: str | None
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(service, message, token)
    return caught.value


async def rejected(service: CollectorService, reason: str) -> float | None:
    metrics = await ascrape(f"http://127.0.0.1:{service.http_port}/metrics")
    return sample(metrics, "preflight_reports_rejected_total", reason=reason)


def make_service(api: FakeAuthApi, **auth: object) -> CollectorService:
    config = CollectorConfig(
        listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        heartbeat_interval=1.0,
        # The API double serves no nodes: node listing is not what these tests are about.
        kubernetes=KubernetesConfig(mode="none"),
        auth=AuthConfig(mode="kubernetes", **auth),  # type: ignore[arg-type]
    )
    return CollectorService(config, kube_configuration=api.configuration())


@pytest.fixture
async def api() -> AsyncIterator[FakeAuthApi]:
    async with auth_api() as fake:
        yield fake


@pytest.fixture
async def service(api: FakeAuthApi) -> AsyncIterator[CollectorService]:
    svc = make_service(api, review_timeout="1s")
    await svc.start()
    yield svc
    await svc.stop()


async def test_agent_token_reports_its_own_node_and_is_reviewed_once(
    api: FakeAuthApi, service: CollectorService
) -> None:
    token = api.issue("gpu-node-7")
    for sequence in (1, 2, 3):
        await send(service, report("gpu-node-7", sequence), token)
    node = service.state.snapshot(time.time()).node("gpu-node-7")
    assert node is not None and node.report.sequence == 3
    # One TokenReview for three reports: the answer is cached under the token's hash.
    assert len(api.reviews) == 1
    review = api.reviews[0]
    assert review["apiVersion"] == "authentication.k8s.io/v1"
    assert review["spec"]["audiences"] == ["preflight-collector"]
    assert api.pod_reads == []  # the node-name extra made the pod lookup unnecessary


async def test_before_kubernetes_1_30_the_node_comes_from_the_pod(
    api: FakeAuthApi, service: CollectorService
) -> None:
    api.node_name_extra = False
    token = api.issue("gpu-node-1")
    await send(service, report("gpu-node-1"), token)
    assert len(api.pod_reads) == 1
    other = await refused(service, report("gpu-node-2"), api.issue("gpu-node-1"))
    assert other.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("make_token", "why"),
    [
        (lambda api: None, "no authorization"),
        (lambda api: "not-a-token", "not authenticated"),
        (lambda api: api.issue("gpu-node-7", service_account="default"), "is not the agent"),
        (lambda api: api.issue("gpu-node-7", namespace="kube-system"), "is not the agent"),
        (
            lambda api: api.issue("gpu-node-7", audiences=("https://kubernetes.default.svc",)),
            "not authenticated",
        ),
        (lambda api: api.issue("gpu-node-7", lifetime=-10), "not authenticated"),
    ],
    ids=["no-token", "garbage", "other-sa", "other-namespace", "other-audience", "expired"],
)
async def test_anything_but_an_agent_token_is_unauthenticated_and_counted(
    api: FakeAuthApi, service: CollectorService, make_token: object, why: str
) -> None:
    token = make_token(api)  # type: ignore[operator]
    error = await refused(service, report("gpu-node-7"), token)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert why in (error.details() or "")
    if token:
        assert token not in (error.details() or "")
    assert await rejected(service, "unauthenticated") == 1.0
    assert service.state.snapshot(time.time()).node("gpu-node-7") is None


async def test_an_agent_reporting_another_node_is_permission_denied(
    api: FakeAuthApi, service: CollectorService
) -> None:
    error = await refused(service, report("gpu-node-7"), api.issue("cpu-node-3"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await rejected(service, "identity_mismatch") == 1.0
    assert await rejected(service, "unauthenticated") == 0.0


async def test_stolen_instance_id_and_max_sequence_cannot_lock_the_real_agent_out(
    api: FakeAuthApi, service: CollectorService
) -> None:
    """The issue's attack: instance id copied from the public API, sequence 2^64-1."""
    real = api.issue("gpu-node-7")
    await send(service, report("gpu-node-7", 1, instance="real-instance"), real)
    stolen = report("gpu-node-7", MAX_SEQUENCE, instance="real-instance")
    # From another node's (compromised) agent, and from a pod with no token at all.
    compromised = await refused(service, stolen, api.issue("cpu-node-3"))
    assert compromised.code() == grpc.StatusCode.PERMISSION_DENIED
    anonymous = await refused(service, stolen, None)
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    for sequence in (2, 3):
        await send(service, report("gpu-node-7", sequence, instance="real-instance"), real)
    node = service.state.snapshot(time.time()).node("gpu-node-7")
    assert node is not None and node.report.sequence == 3
    assert await rejected(service, "sequence_regressed") == 0.0


async def test_api_down_new_tokens_unavailable_in_time_verified_agents_keep_reporting(
    api: FakeAuthApi,
) -> None:
    # A short cache TTL: the verified token's entry is past its TTL during the outage.
    service = make_service(api, review_timeout="1s", cache_ttl="0.2s")
    await service.start()
    try:
        known = api.issue("gpu-node-1")
        await send(service, report("gpu-node-1", 1), known)
        newcomer = api.issue("gpu-node-2")
        await api.stop()
        await asyncio.sleep(0.3)
        started = time.monotonic()
        error = await refused(service, report("gpu-node-2"), newcomer)
        waited = time.monotonic() - started
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        # Bounded by the review deadline, not by the client's 10 s call deadline.
        assert waited < 10 / 2
        # Not a rejection of the report: an outage is not the agent's fault.
        assert await rejected(service, "unauthenticated") == 0.0
        await send(service, report("gpu-node-1", 2), known)  # from the cache, still valid
        await api.start()
        await send(service, report("gpu-node-2"), newcomer)  # the API is back
    finally:
        await service.stop()
    nodes = {n.name: n.report.sequence for n in service.state.snapshot(time.time()).nodes}
    assert nodes == {"gpu-node-1": 2, "gpu-node-2": 1}


async def test_a_hung_api_never_holds_up_verified_agents(
    api: FakeAuthApi, service: CollectorService
) -> None:
    known = api.issue("gpu-node-1")
    await send(service, report("gpu-node-1", 1), known)
    api.review_delay = 30.0
    newcomer = asyncio.create_task(send(service, report("gpu-node-2"), api.issue("gpu-node-2")))
    # While the newcomer's review hangs, the verified agent's reports go through.
    for sequence in (2, 3, 4):
        await send(service, report("gpu-node-1", sequence), known)
    assert not newcomer.done()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await newcomer
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no answer within 1s" in (caught.value.details() or "")
    node = service.state.snapshot(time.time()).node("gpu-node-1")
    assert node is not None and node.report.sequence == 4


async def test_real_agent_client_rereads_its_rotated_token_file(
    api: FakeAuthApi, service: CollectorService, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(api.issue("gpu-node-5"))
    acks: list[pb.ReportAck] = []
    client = ReportClient(
        f"127.0.0.1:{service.grpc_port}",
        timeout=5,
        max_backoff=1,
        on_ack=acks.append,
        token_file=token_file,
    )
    sender = asyncio.create_task(client.run())
    try:
        client.submit(report("gpu-node-5", 1))
        await wait_until(lambda: len(acks) == 1)
        # The kubelet rotates the projected token: the next call carries the new one.
        token_file.write_text(api.issue("gpu-node-5"))
        client.submit(report("gpu-node-5", 2))
        await wait_until(lambda: len(acks) == 2)
    finally:
        sender.cancel()
        await client.close()
    assert len(api.reviews) == 2
    assert api.reviews[0]["spec"]["token"] != api.reviews[1]["spec"]["token"]


async def wait_until(predicate: object, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
