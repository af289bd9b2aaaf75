"""Benchmark: Report latency with TLS + cached TokenReview against plaintext, side by side.

Two real CollectorServices on loopback in this process: one plaintext with
`auth.mode: none`, one with TLS (a trustme CA) and `auth.mode: kubernetes` against an
API double answering TokenReview with the answers of tests/support/kubeauth.py, served
by a bare aiohttp app here (kmock matches every request against its whole request
history, which makes 10,000 reviews take the better part of an hour). Both
are preloaded with N nodes; on the TLS one each node's agent token is reviewed once
(the cache is warm before timing, as in steady state where a token is re-reviewed
about once an hour). A client process then sends Report RPCs at a steady rate
(open loop), alternating between the two collectors report by report, each report
carrying its node's token on the TLS side, over long-lived channels as agents use
them; then the same number one at a time (the cost of one Report with nothing queued
in front of it). p50/p99/max per variant and phase, and the TokenReviews made while
timing (0 expected: all from the cache).

Loopback only, bounded durations, stops by itself. Not part of `make test`.
Run: .venv/bin/python bench/bench_auth.py [--sizes 1000,10000] [--rate 100] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import trustme

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiohttp import web  # noqa: E402
from kubernetes.client import Configuration  # noqa: E402

from agent.config import CollectorTls  # noqa: E402
from collector.config import (  # noqa: E402
    AuthConfig,
    CollectorConfig,
    KubernetesConfig,
    LimitsConfig,
    ListenConfig,
    TlsConfig,
)
from collector.service import CollectorService  # noqa: E402
from preflight.v1 import report_pb2 as pb  # noqa: E402
from preflight.v1 import report_pb2_grpc as pb_grpc  # noqa: E402
from tests.support.kubeauth import FakeAuthApi  # noqa: E402

SERVER_NAME = "preflight-collector.preflight.svc"
TARGETS = ("charts", "hub.docker.com", "gcr.io", "quay.io", "grafana", "app.run.ai")


def channel_credentials(tls: CollectorTls) -> grpc.ChannelCredentials:
    """grpcio credentials for this load generator (the agent itself speaks agent.wire)."""
    assert tls.ca_file is not None
    return grpc.ssl_channel_credentials(root_certificates=tls.ca_file.read_bytes())


def tls_channel_options(tls: CollectorTls) -> list[tuple[str, str]]:
    return [] if tls.server_name is None else [("grpc.ssl_target_name_override", tls.server_name)]


def make_report(node: int, sequence: int, rng: random.Random) -> pb.NodeReport:
    report = pb.NodeReport(
        node_name=f"node-{node:05d}",
        agent_version="0.1.0",
        instance_id=f"instance-{node}",
        sequence=sequence,
        probe_interval_seconds=15,
        heartbeat_interval_seconds=30,
    )
    report.sent_at.GetCurrentTime()
    report.hardware.logical_cores = 64
    report.hardware.memory_total_bytes = 512 << 30
    report.gpus.pci_count = report.gpus.driver_count = 8
    for target in TARGETS:
        e = report.egress.add(target=target, outcome=pb.OUTCOME_UP)
        e.started_at.GetCurrentTime()
        e.phases.add(phase=pb.PHASE_CONNECT, duration_seconds=rng.uniform(0.001, 0.02))
    return report


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def client(args: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Open-loop sender alternating plaintext / TLS; prints latency per variant."""
    rng = random.Random(1)
    tokens: list[str] = json.loads(Path(args["tokens"]).read_text())
    n, rate, seconds = args["nodes"], args["rate"], args["seconds"]
    count = int(rate * seconds)
    tls = CollectorTls(ca_file=Path(args["ca"]), server_name=SERVER_NAME)
    credentials = channel_credentials(tls)
    assert credentials is not None
    plain = grpc.aio.insecure_channel(f"127.0.0.1:{args['plain']}")
    secure = grpc.aio.secure_channel(
        f"127.0.0.1:{args['tls']}", credentials, options=tls_channel_options(tls)
    )
    stubs = {"plaintext": pb_grpc.CollectorStub(plain), "tls": pb_grpc.CollectorStub(secure)}
    latencies: dict[str, list[float]] = {"plaintext": [], "tls": []}
    errors: dict[str, int] = {"plaintext": 0, "tls": 0}

    def metadata(variant: str, node: int) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {tokens[node]}"),) if variant == "tls" else None

    # Connect (and handshake) before timing, as a running agent's channel is.
    for variant, stub in stubs.items():
        await stub.Report(make_report(0, 10, rng), timeout=30, metadata=metadata(variant, 0))

    async def one(variant: str, node: int, sequence: int) -> None:
        message = make_report(node, sequence, rng)
        started = time.perf_counter()
        try:
            await stubs[variant].Report(message, timeout=60, metadata=metadata(variant, node))
        except grpc.aio.AioRpcError:
            errors[variant] += 1
            return
        latencies[variant].append(time.perf_counter() - started)

    def variant_of(k: int) -> str:
        # Alternate, and alternate which goes first, so neither variant gets the quiet slot.
        return ("plaintext", "tls")[(k + (k // 2)) % 2]

    results: dict[str, dict[str, float]] = {}
    # Phase 1, open loop: a steady rate, as agents report, queueing included.
    tasks = []
    begin = time.perf_counter()
    for k in range(count):
        delay = begin + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(variant_of(k), (k // 2) % n, 100 + k)))
    await asyncio.gather(*tasks)
    results.update(summary(latencies, errors, "open"))
    # Phase 2, one at a time: the cost of one Report with nothing queued in front of it.
    for values in latencies.values():
        values.clear()
    for k in range(count):
        await one(variant_of(k), (k // 2) % n, 100 + count + k)
    results.update(summary(latencies, errors, "serial"))
    await plain.close()
    await secure.close()
    return results


def summary(
    latencies: dict[str, list[float]], errors: dict[str, int], phase: str
) -> dict[str, dict[str, float]]:
    return {
        f"{phase} {variant}": {
            "reports": len(values),
            "errors": errors[variant],
            "p50_ms": 1000 * percentile(values, 0.5),
            "p99_ms": 1000 * percentile(values, 0.99),
            "max_ms": 1000 * max(values) if values else float("nan"),
        }
        for variant, values in latencies.items()
    }


async def measure(n: int, rate: float, seconds: float, tmp: Path) -> dict[str, Any]:
    ca = trustme.CA()
    cert = ca.issue_cert(SERVER_NAME)
    (tmp / "tls.crt").write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    (tmp / "tls.key").write_bytes(cert.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    # Each node reports at most a handful of times: keep the rate limit out of the figures.
    limits = LimitsConfig(report_burst=1000)
    base = {
        "listen": ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"),
        "kubernetes": KubernetesConfig(mode="none"),
        "limits": limits,
        "forget_after": 36000.0,
    }
    async with review_api() as (api, configuration):
        plain = CollectorService(CollectorConfig(**base))  # type: ignore[arg-type]
        secure = CollectorService(
            CollectorConfig(
                **base,  # type: ignore[arg-type]
                tls=TlsConfig(cert_file=tmp / "tls.crt", key_file=tmp / "tls.key"),
                auth=AuthConfig(mode="kubernetes", cache_size=max(20_000, 2 * n)),
            ),
            kube_configuration=configuration,
        )
        await plain.start()
        await secure.start()
        try:
            tokens = [api.issue(f"node-{i:05d}") for i in range(n)]
            (tmp / "tokens.json").write_text(json.dumps(tokens))
            warm_started = time.perf_counter()
            await preload(plain, secure, tokens, tmp / "ca.pem")
            warm_seconds = time.perf_counter() - warm_started
            # Steady state: let the first judging of the preloaded nodes pass.
            await asyncio.sleep(3)
            reviews_before = len(api.reviews)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--client",
                json.dumps(
                    {
                        "plain": plain.grpc_port,
                        "tls": secure.grpc_port,
                        "ca": str(tmp / "ca.pem"),
                        "tokens": str(tmp / "tokens.json"),
                        "nodes": n,
                        "rate": rate,
                        "seconds": seconds,
                    }
                ),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await process.communicate()
            result: dict[str, Any] = json.loads(out)
            result["reviews_while_timing"] = len(api.reviews) - reviews_before
            result["warm_seconds"] = warm_seconds
            result["reviews_warm"] = reviews_before
            return result
        finally:
            await plain.stop()
            await secure.stop()


@contextlib.asynccontextmanager
async def review_api() -> AsyncIterator[tuple[FakeAuthApi, Configuration]]:
    """TokenReview (and nothing else: the watcher's reads get 404) on loopback."""
    api = FakeAuthApi(handler=None, port=0)  # type: ignore[arg-type]  # answers only

    async def review(request: web.Request) -> web.Response:
        body = await request.json()
        api.reviews.append(body)
        return web.json_response(api.review(body), status=201)

    app = web.Application()
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", review)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield api, Configuration(host=f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


async def preload(
    plain: CollectorService, secure: CollectorService, tokens: list[str], ca: Path
) -> None:
    """Every node reports once to each collector; on the TLS one its token gets reviewed."""
    rng = random.Random(2)
    tls = CollectorTls(ca_file=ca, server_name=SERVER_NAME)
    credentials = channel_credentials(tls)
    assert credentials is not None
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{plain.grpc_port}") as p,
        grpc.aio.secure_channel(
            f"127.0.0.1:{secure.grpc_port}", credentials, options=tls_channel_options(tls)
        ) as s,
    ):
        plain_stub, secure_stub = pb_grpc.CollectorStub(p), pb_grpc.CollectorStub(s)
        semaphore = asyncio.Semaphore(32)
        started = time.perf_counter()

        async def warm(i: int) -> None:
            if i and i % 1000 == 0:
                took = time.perf_counter() - started
                print(f"  warm: {i} nodes after {took:.1f} s", file=sys.stderr, flush=True)
            async with semaphore:
                await plain_stub.Report(make_report(i, 1, rng), timeout=60)
                await secure_stub.Report(
                    make_report(i, 1, rng),
                    timeout=60,
                    metadata=(("authorization", f"Bearer {tokens[i]}"),),
                )

        await asyncio.gather(*(warm(i) for i in range(len(tokens))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rate", type=float, default=100.0, help="Report RPCs per second, both")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(asyncio.run(client(json.loads(args.client)))))
        return
    print(f"nproc {os.cpu_count()}, Python {sys.version.split()[0]}, {len(TARGETS)} targets/node")
    header = ("nodes ", "phase            ", "variant                 ", "reports")
    rows = ["| " + " | ".join((*header, "p50     ", "p99     ", "max     ")) + " |"]
    rows.append("| " + " | ".join("-" * len(h) for h in (*header, *["p50     "] * 3)) + " |")
    notes = []
    phases = {"open": f"open loop {args.rate:g}/s", "serial": "one at a time"}
    labels = {"plaintext": "plaintext, auth none", "tls": "TLS + cached TokenReview"}
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(measure(n, args.rate, args.seconds, Path(tmp)))
        for phase, phase_label in phases.items():
            for variant, label in labels.items():
                r = result[f"{phase} {variant}"]
                rows.append(
                    f"| {n:<6,} | {phase_label:<17} | {label:<24} | {r['reports']:>7} "
                    f"| {r['p50_ms']:>5.1f} ms | {r['p99_ms']:>5.1f} ms | {r['max_ms']:>5.0f} ms |"
                )
                if r["errors"]:
                    notes.append(f"{n} {phase} {variant}: {r['errors']} errors")
            tls, plain = result[f"{phase} tls"], result[f"{phase} plaintext"]
            p99 = tls["p99_ms"] / plain["p99_ms"]
            p50 = tls["p50_ms"] / plain["p50_ms"]
            notes.append(
                f"{n:,} nodes, {phase_label}: TLS/plaintext p99 {p99:.2f}x, p50 {p50:.2f}x"
            )
        notes.append(
            f"{n:,} nodes: {result['reviews_warm']} TokenReviews to warm "
            f"({result['warm_seconds']:.1f} s), {result['reviews_while_timing']} while timing"
        )
        print("\n".join(rows[-4:] + notes[-3:]), flush=True)
    print("\n".join(rows))
    print("\n".join(notes))


if __name__ == "__main__":
    main()
