"""auth.mode none and token-file in process, the bearer header, and the exposure warnings."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc
import grpc.aio
import pytest

from collector.auth import AuthFailure, SharedTokenAuth, bearer_token
from collector.config import AuthConfig, CollectorConfig, KubernetesConfig, ListenConfig
from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from preflight.v1 import report_pb2_grpc as pb_grpc


def metadata(value: str) -> list[tuple[str, str]]:
    return [("user-agent", "grpc-python"), ("authorization", value)]


@pytest.mark.parametrize(
    "value", ["", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "token-without-scheme"]
)
def test_anything_but_one_bearer_token_is_unauthenticated(value: str) -> None:
    with pytest.raises(AuthFailure) as caught:
        bearer_token(metadata(value))
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.reason == "unauthenticated"


def test_two_authorization_headers_are_refused_and_one_is_read() -> None:
    assert bearer_token(metadata("bearer abc.def")) == "abc.def"
    with pytest.raises(AuthFailure, match="more than one"):
        bearer_token([*metadata("Bearer a"), ("authorization", "Bearer b")])
    with pytest.raises(AuthFailure, match="no authorization"):
        bearer_token([("user-agent", "x")])


async def test_shared_token_is_reread_when_the_file_is_rotated(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-secret\n")
    auth = SharedTokenAuth(path)
    assert (await auth.authenticate(metadata("Bearer first-secret"))).principal == "token-file"
    staged = tmp_path / "token.new"
    staged.write_text("second-secret\n")
    os.replace(staged, path)
    with pytest.raises(AuthFailure):
        await auth.authenticate(metadata("Bearer first-secret"))
    assert await auth.authenticate(metadata("Bearer second-secret"))
    # A rotation caught with an empty file keeps the last token instead of admitting "".
    path.write_text("")
    assert await auth.authenticate(metadata("Bearer second-secret"))
    with pytest.raises(AuthFailure):
        await auth.authenticate(metadata("Bearer "))


def _config(grpc_address: str, **auth: object) -> CollectorConfig:
    return CollectorConfig(
        listen=ListenConfig(grpc=grpc_address, http="127.0.0.1:0"),
        kubernetes=KubernetesConfig(mode="none"),
        auth=AuthConfig(**auth),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("address", "warned"), [("127.0.0.1:0", False), ("[::1]:0", False), ("0.0.0.0:0", True)]
)
async def test_auth_none_beyond_loopback_logs_a_warning(
    caplog: pytest.LogCaptureFixture, address: str, warned: bool
) -> None:
    service = CollectorService(_config(address))
    with caplog.at_level(logging.WARNING, logger="collector.service"):
        await service.start()
        await service.stop()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert ("auth.mode none" in messages) is warned
    assert ("without TLS" in messages) is warned


async def test_token_file_mode_over_grpc(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret-shared-token")
    service = CollectorService(
        _config("127.0.0.1:0", mode="token-file", token_file=tmp_path / "token")
    )
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            stub = pb_grpc.CollectorStub(channel)
            message = pb.NodeReport(node_name="node-a", instance_id="i", sequence=1)
            await stub.Report(message, metadata=(("authorization", "Bearer s3cret-shared-token"),))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Report(
                    message, metadata=(("authorization", "Bearer s3cret-shared-tokeN"),)
                )
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "s3cret" not in (caught.value.details() or "")
    finally:
        await service.stop()
    snapshot = service.state.snapshot(0)
    assert dict(snapshot.rejected)["unauthenticated"] == 1
    assert [n.name for n in snapshot.nodes] == ["node-a"]


async def test_refusals_are_all_counted_but_logged_once_with_the_peer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "token").write_text("s3cret-shared-token")
    service = CollectorService(
        _config("127.0.0.1:0", mode="token-file", token_file=tmp_path / "token")
    )
    await service.start()
    try:
        with caplog.at_level(logging.WARNING, logger="collector.ingest"):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
                stub = pb_grpc.CollectorStub(channel)
                message = pb.NodeReport(node_name="node-a", instance_id="i", sequence=1)
                for _ in range(50):
                    with pytest.raises(grpc.aio.AioRpcError):
                        await stub.Report(
                            message, metadata=(("authorization", "Bearer forged-xyz"),)
                        )
    finally:
        await service.stop()
    assert dict(service.state.snapshot(0).rejected)["unauthenticated"] == 50
    refused = [r.getMessage() for r in caplog.records if "refused report" in r.getMessage()]
    # A flood of forged calls must not flood the log: one line per reason and interval.
    assert len(refused) == 1, refused
    assert "unauthenticated" in refused[0]
    assert "peer ipv4:127.0.0.1:" in refused[0], refused[0]
    assert "forged-xyz" not in refused[0]  # a token is never logged
