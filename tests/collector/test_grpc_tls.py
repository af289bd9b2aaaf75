"""TLS on the gRPC port with a private CA (trustme), real sockets, real agent clients.

Rotation is done the way a Secret volume does it (new files, then an atomic swap) and
in place (a careless `cp`), while an agent stays connected; what the port serves is
read back with a raw TLS handshake, so the test sees the certificate, not a guess.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from agent.client import ReportClient
from agent.config import CollectorTls
from collector.config import CollectorConfig, KubernetesConfig, ListenConfig, TlsConfig
from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb

SERVER_NAME = "preflight-collector.preflight.svc"


def report(name: str, sequence: int) -> pb.NodeReport:
    message = pb.NodeReport(node_name=name, instance_id="i1", sequence=sequence)
    message.sent_at.GetCurrentTime()
    return message


def write_pair(ca: trustme.CA, directory: Path, name: str = SERVER_NAME) -> tuple[Path, Path]:
    cert = ca.issue_cert(name)
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    key_file.write_bytes(cert.private_key_pem.bytes())
    return cert_file, key_file


def ca_file(tmp: Path, *cas: trustme.CA, name: str = "ca.pem") -> Path:
    path = tmp / name
    path.write_bytes(b"".join(ca.cert_pem.bytes() for ca in cas))
    return path


def served_certificate(port: int, trusted: Path) -> x509.Certificate:
    """The certificate the port presents now (a new connection, so a new handshake)."""
    context = ssl.create_default_context(cafile=str(trusted))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def make_service(cert: Path, key: Path, client_ca: Path | None = None) -> CollectorService:
    return CollectorService(
        CollectorConfig(
            listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
            kubernetes=KubernetesConfig(mode="none"),
            tls=TlsConfig(cert_file=cert, key_file=key, client_ca_file=client_ca),
        )
    )


async def deliver(port: int, tls: CollectorTls, message: pb.NodeReport, limit: float = 5.0) -> bool:
    """True when a fresh agent client gets `message` acknowledged within `limit`."""
    acks: list[pb.ReportAck] = []
    client = ReportClient(
        f"127.0.0.1:{port}", timeout=2, max_backoff=1, on_ack=acks.append, tls=tls
    )
    sender = asyncio.create_task(client.run())
    client.submit(message)
    deadline = time.monotonic() + limit
    while not acks and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    sender.cancel()
    await client.close()
    return bool(acks)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def service(ca: trustme.CA, tmp_path: Path) -> AsyncIterator[CollectorService]:
    cert, key = write_pair(ca, tmp_path / "tls")
    svc = make_service(cert, key)
    await svc.start()
    yield svc
    await svc.stop()


async def test_agent_with_the_ca_reports_over_tls_and_plaintext_is_refused(
    ca: trustme.CA, service: CollectorService, tmp_path: Path
) -> None:
    trusted = CollectorTls(ca_file=ca_file(tmp_path, ca), server_name=SERVER_NAME)
    assert await deliver(service.grpc_port, trusted, report("node-a", 1))
    assert not await deliver(service.grpc_port, CollectorTls(), report("node-b", 1), limit=1.5)
    stranger = CollectorTls(ca_file=ca_file(tmp_path, trustme.CA(), name="x.pem"),
                            server_name=SERVER_NAME)  # fmt: skip
    assert not await deliver(service.grpc_port, stranger, report("node-c", 1), limit=1.5)
    wrong_name = CollectorTls(ca_file=ca_file(tmp_path, ca), server_name="evil.example")
    assert not await deliver(service.grpc_port, wrong_name, report("node-d", 1), limit=1.5)
    names = {n.name for n in service.state.snapshot(time.time()).nodes}
    assert names == {"node-a"}


async def test_rotation_while_an_agent_is_connected_needs_no_restart(
    ca: trustme.CA, service: CollectorService, tmp_path: Path
) -> None:
    new_ca = trustme.CA()
    both = ca_file(tmp_path, ca, new_ca, name="both.pem")
    acks: list[pb.ReportAck] = []
    connected = ReportClient(
        f"127.0.0.1:{service.grpc_port}",
        timeout=2,
        max_backoff=1,
        on_ack=acks.append,
        tls=CollectorTls(ca_file=both, server_name=SERVER_NAME),
    )
    sender = asyncio.create_task(connected.run())
    try:
        connected.submit(report("node-a", 1))
        await wait_until(lambda: len(acks) == 1)
        before = served_certificate(service.grpc_port, both)
        assert before.issuer == x509.load_pem_x509_certificate(ca.cert_pem.bytes()).subject

        # As a Secret volume updates: the new pair beside the old, then one rename each.
        staged_cert, staged_key = write_pair(new_ca, tmp_path / "staged")
        os.replace(staged_key, tmp_path / "tls" / "tls.key")
        os.replace(staged_cert, tmp_path / "tls" / "tls.crt")

        connected.submit(report("node-a", 2))
        await wait_until(lambda: len(acks) == 2)  # the open connection keeps working
        after = served_certificate(service.grpc_port, both)
        assert after.issuer == x509.load_pem_x509_certificate(new_ca.cert_pem.bytes()).subject
        assert after.serial_number != before.serial_number
        old_only = CollectorTls(ca_file=ca_file(tmp_path, ca, name="old.pem"),
                                server_name=SERVER_NAME)  # fmt: skip
        new_only = CollectorTls(ca_file=ca_file(tmp_path, new_ca, name="new.pem"),
                                server_name=SERVER_NAME)  # fmt: skip
        assert await deliver(service.grpc_port, new_only, report("node-b", 1))
        assert not await deliver(service.grpc_port, old_only, report("node-c", 1), limit=1.5)
    finally:
        sender.cancel()
        await connected.close()
    assert service.certificates is not None and service.certificates.reloads == 1


async def test_a_half_written_key_keeps_the_current_certificate(
    ca: trustme.CA, service: CollectorService, tmp_path: Path
) -> None:
    trusted = ca_file(tmp_path, ca)
    before = served_certificate(service.grpc_port, trusted)
    # A `cp` caught halfway: the new certificate is there, its key not yet.
    other = ca.issue_cert(SERVER_NAME)
    (tmp_path / "tls" / "tls.crt").write_bytes(b"".join(p.bytes() for p in other.cert_chain_pems))
    (tmp_path / "tls" / "tls.key").write_bytes(other.private_key_pem.bytes()[:40])
    assert served_certificate(service.grpc_port, trusted).serial_number == before.serial_number
    assert await deliver(
        service.grpc_port, CollectorTls(ca_file=trusted, server_name=SERVER_NAME), report("a", 1)
    )
    # The key lands: the next handshake serves the new pair.
    (tmp_path / "tls" / "tls.key").write_bytes(other.private_key_pem.bytes())
    after = served_certificate(service.grpc_port, trusted)
    assert after.serial_number != before.serial_number


async def test_mtls_admits_only_agents_with_a_client_certificate(
    ca: trustme.CA, tmp_path: Path
) -> None:
    cert, key = write_pair(ca, tmp_path / "tls")
    client_ca = trustme.CA()
    service = make_service(cert, key, client_ca=ca_file(tmp_path, client_ca, name="client.pem"))
    await service.start()
    try:
        agent_cert = client_ca.issue_cert("preflight-agent")
        (tmp_path / "agent.crt").write_bytes(
            b"".join(p.bytes() for p in agent_cert.cert_chain_pems)
        )
        (tmp_path / "agent.key").write_bytes(agent_cert.private_key_pem.bytes())
        server_ca = ca_file(tmp_path, ca)
        with_cert = CollectorTls(
            ca_file=server_ca,
            server_name=SERVER_NAME,
            cert_file=tmp_path / "agent.crt",
            key_file=tmp_path / "agent.key",
        )
        without = CollectorTls(ca_file=server_ca, server_name=SERVER_NAME)
        assert await deliver(service.grpc_port, with_cert, report("node-a", 1))
        assert not await deliver(service.grpc_port, without, report("node-b", 1), limit=1.5)
    finally:
        await service.stop()
    assert {n.name for n in service.state.snapshot(time.time()).nodes} == {"node-a"}


def test_unreadable_or_mismatched_files_are_config_errors_naming_the_key(
    ca: trustme.CA, tmp_path: Path
) -> None:
    from collector.config import ConfigError

    cert, _ = write_pair(ca, tmp_path / "tls")
    with pytest.raises(ConfigError, match=r"tls\.key_file: cannot read"):
        make_service(cert, tmp_path / "missing.key")
    _, other_key = write_pair(ca, tmp_path / "other")
    with pytest.raises(ConfigError, match="not a matching PEM certificate and key"):
        make_service(cert, other_key)


async def wait_until(predicate: object, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
