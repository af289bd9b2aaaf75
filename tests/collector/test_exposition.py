"""The /metrics exposition: golden text for a fixed view, promtool, the per-node cache.

The golden view is built through the real ClusterState (accept, snapshot) with fixed
clocks. Regenerate the golden file after an intended change with
`PREFLIGHT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/collector/test_exposition.py` and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from collector.concerns.egress import issuer_cn
from collector.config import LimitsConfig
from collector.exposition import (
    _NODE_FAMILIES,
    FAMILIES,
    PLAIN_MAX_BYTES,
    RUN_NODES,
    Exposition,
    render,
    render_with_client,
)
from collector.kube.facts import KubeFacts, KubeNode
from collector.kube.platform_facts import (
    OK,
    ClusterPolicyInfo,
    OperatorDeploymentInfo,
    PlatformFacts,
)
from collector.plan import PlanIndex
from collector.published import Published
from collector.rules.model import Verdict
from collector.state import ClusterState
from preflight.mirrors import Mirror
from preflight.v1 import report_pb2 as pb
from tests.support.builders import T0, egress_down, egress_up, hardware, mount, ts
from tests.support.builders import report as full_report
from tests.support.promql import PROMTOOL_MISSING

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "metrics.txt"


# The plan the collector gives every node; cpu-node-3's old agent reports none (outdated).
CURRENT_PLAN = "5c0ffee0d00dfeed"


def golden_view() -> Published:
    state = ClusterState(LimitsConfig(), 30.0, 3, 600.0)
    gpu1 = pb.NodeReport(
        node_name="gpu-node-1",
        agent_version="0.1.0",
        instance_id="a",
        sequence=1,
        sent_at=ts(T0 - 0.5),
        plan_version=CURRENT_PLAN,
        hardware=hardware(64, 512 * 2**30),
        gpus=pb.GpuFacts(pci_count=8, driver_count=8),
        egress=[
            egress_up("hub.docker.com", not_after=T0 + 90 * 86400),
            egress_up("quay.io", not_after=T0 + 30 * 86400),
        ],
        mounts=[mount("/mnt/shared", pb.MOUNT_STATE_MOUNTED, pb.WRITE_CHECK_OK, 2)],
        clock=pb.ClockFacts(
            available=True,
            synchronised=True,
            state="ok",
            estimated_error_seconds=0.000125,
            maximum_error_seconds=0.0215,
        ),
    )
    # Capacity facts (issue 14): filesystems by role, GPUs with model, memory and MIG.
    gpu1.hardware.filesystems.add(
        role="root", path="/", capacity_bytes=100 * 2**30, free_bytes=40 * 2**30
    )
    gpu1.hardware.filesystems.add(
        role="container_runtime",
        path="/var/lib/containerd",
        capacity_bytes=2 * 2**40,
        free_bytes=2**40,
    )
    gpu1.gpus.driver_version = "535.129.03"
    gpu1.gpus.cuda_version = "12.2"
    mig_gpu = gpu1.gpus.devices.add(
        index=0, name="NVIDIA A100-SXM4-80GB", memory_total_bytes=80 * 2**30, mig_enabled=True
    )
    mig_gpu.mig_devices.add(index=0, name="NVIDIA A100-SXM4-80GB MIG 3g.40gb")
    mig_gpu.mig_devices.add(index=1, name="NVIDIA A100-SXM4-80GB MIG 3g.40gb")
    gpu1.gpus.devices.add(index=1, name="NVIDIA A100-SXM4-80GB", memory_total_bytes=80 * 2**30)
    intercepting = pb.Certificate(
        subject="CN=hub.docker.com",
        issuer='CN=Corp \\"Inspection\\" CA\\, Berlin,O=Corp',
        sha256_fingerprint="0f" * 32,
        not_after=ts(T0 + 7 * 86400),
    )
    gpu2 = pb.NodeReport(
        node_name="gpu-node-2",
        agent_version="0.1.0",
        instance_id="b",
        sequence=7,
        plan_version=CURRENT_PLAN,
        sent_at=ts(T0 + 1.25),  # agent clock ahead
        hardware=hardware(64, 512 * 2**30),
        gpus=pb.GpuFacts(pci_count=8, driver_count=7),
        egress=[
            egress_down(
                "hub.docker.com",
                pb.REASON_TLS_UNTRUSTED,
                [pb.PHASE_RESOLVE, pb.PHASE_CONNECT, pb.PHASE_TLS],
                intercepting,
            ),
            egress_down("quay.io", pb.REASON_CONNECT_REFUSED, [pb.PHASE_RESOLVE, pb.PHASE_CONNECT]),
        ],
        mounts=[
            mount("/mnt/shared", pb.MOUNT_STATE_STUCK, pb.WRITE_CHECK_FAILED, 0),
            mount("/mnt/scratch", pb.MOUNT_STATE_MISSING, pb.WRITE_CHECK_NOT_EXPECTED, 0),
        ],
        # NTP lost: the kernel's maximum error grows by 500 ppm (16 s here).
        clock=pb.ClockFacts(
            available=True,
            synchronised=False,
            state="error",
            estimated_error_seconds=16.0,
            maximum_error_seconds=16.0,
        ),
    )
    cpu3 = pb.NodeReport(
        node_name="cpu-node-3",
        agent_version="0.0.9",
        instance_id="c",
        sequence=3,
        sent_at=ts(T0 - 200),
        hardware=hardware(4, 8 * 2**30),
        egress=[
            egress_up("hub.docker.com", proxy=True),
            egress_down(
                "quay.io",
                pb.REASON_PROXY_DENIED,
                [pb.PHASE_RESOLVE, pb.PHASE_CONNECT, pb.PHASE_PROXY_CONNECT],
            ),
        ],
        mounts=[mount("/mnt/shared", pb.MOUNT_STATE_MOUNTED, pb.WRITE_CHECK_OK, 1)],
    )
    state.accept(cpu3, now=T0 - 200)  # stale by T0: 3 heartbeats of 30 s passed
    state.accept(gpu1, now=T0 - 1)
    state.accept(gpu2, now=T0)
    state.count_rejection("too_many_targets")
    kube = KubeFacts(
        server_version="v1.17.4",
        nodes=tuple(
            KubeNode(
                name=name,
                control_plane=cp,
                roles=(),
                taints=(),
                capacity_cpu=64,
                capacity_memory_bytes=2**30,
                capacity_gpus=gpus,
                allocatable_cpu=64,
                allocatable_memory_bytes=2**30,
                allocatable_gpus=gpus,
                kubelet_version="v1.17.4",
                container_runtime_version="containerd://1.6",
                ready=True,
            )
            for name, cp, gpus in (
                ("control-1", True, 0),
                ("cpu-node-3", False, 0),
                ("gpu-node-1", False, 8),
                ("gpu-node-2", False, 6),
            )
        ),
        error=None,
        fetched_at=T0,
        platform=PlatformFacts(
            cluster_policy=OK,
            cluster_policies=(ClusterPolicyInfo("cluster-policy", "ready", "gpu-operator", ""),),
            operator=OK,
            operator_deployment=OperatorDeploymentInfo(
                namespace="gpu-operator",
                name="gpu-operator",
                version="v25.10.0",
                version_source="app.kubernetes.io/version",
                image="nvcr.io/nvidia/gpu-operator:v25.10.0",
                ready_replicas=1,
                replicas=1,
            ),
        ),
    )
    verdicts = (
        Verdict("kubernetes_version", "pass", "Kubernetes 1.17.4"),
        Verdict("egress_install", "fail", "quay.io unreachable", nodes=("gpu-node-2",)),
        Verdict("shared_volume", "fail", "stuck on gpu-node-2"),
        Verdict("agent_coverage", "fail", "control-1 has no agent"),
        Verdict("gpu_nodes", "warn", "counts disagree"),
    )
    return Published(
        state=state.snapshot(T0),
        verdicts=verdicts,
        ready=(("install", False), ("runtime", True)),
        kube=kube,
        plans=PlanIndex(CURRENT_PLAN, CURRENT_PLAN),
        mirrors=(Mirror("quay.io", "quay.io:443", "registry.corp", 5000),),
    )


def test_golden_exposition() -> None:
    text = Exposition().render(golden_view())
    if os.environ.get("PREFLIGHT_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(text)
    assert text.decode() == GOLDEN.read_text(encoding="utf-8")


def test_golden_equals_prometheus_client_rendering() -> None:
    # The cached text writer and prometheus_client's own writer agree byte for byte.
    assert Exposition().render(golden_view()) == render_with_client(golden_view())


def test_golden_families_once_contiguous_and_parsable() -> None:
    text = GOLDEN.read_text(encoding="utf-8")
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert names == [f.name for f in FAMILIES]
    # Contiguous: a sample line always belongs to the family of the last TYPE line.
    current = ""
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            current = line.split()[2]
        elif not line.startswith("#"):
            assert line.split("{")[0].split(" ")[0] == current, line
    families = {f.name: f for f in text_string_to_metric_families(text)}
    untrusted = families["preflight_egress_tls_untrusted_certificate_info"].samples
    assert [s.labels for s in untrusted] == [
        {
            "node": "gpu-node-2",
            "target": "hub.docker.com",
            "issuer": 'Corp "Inspection" CA, Berlin',
            "fingerprint_sha256": "0f" * 32,
        }
    ]
    # Free text (the probe's error message) never reaches a label.
    assert "free text" not in text


def test_golden_semantics() -> None:
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(GOLDEN.read_text(encoding="utf-8"))
        for s in f.samples
    }

    def get(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert get("preflight_agent_up", node="cpu-node-3") == 0.0  # stale
    assert get("preflight_agent_up", node="gpu-node-2") == 1.0
    assert get("preflight_agent_clock_skew_seconds", node="gpu-node-2") == pytest.approx(1.25)
    assert get("preflight_mount_stuck", node="gpu-node-2", path="/mnt/shared") == 1.0
    assert get("preflight_mount_up", node="gpu-node-2", path="/mnt/shared") == 0.0
    assert get("preflight_mount_peers_visible", node="gpu-node-1", path="/mnt/shared") == 2.0
    assert get(
        "preflight_egress_failure", node="cpu-node-3", target="quay.io", reason="proxy_denied"
    )
    assert get("preflight_egress_failure", node="gpu-node-1", target="quay.io", reason="") is None
    assert get("preflight_node_gpus", node="gpu-node-2", source="allocatable") == 6.0
    assert get("preflight_node_gpus", node="cpu-node-3", source="pci") is None  # no GPU facts
    # The earliest expiry across nodes: the intercepting proxy's 7-day certificate.
    assert get(
        "preflight_egress_tls_cert_not_after_timestamp_seconds", target="hub.docker.com"
    ) == (T0 + 7 * 86400)
    # A target that never succeeded on a node has no last-success series there.
    assert (
        get("preflight_egress_last_success_timestamp_seconds", node="gpu-node-2", target="quay.io")
        is None
    )
    assert get("preflight_reports_rejected_total", reason="too_many_targets") == 1.0
    assert get("preflight_reports_rejected_total", reason="malformed") == 0.0
    assert get("preflight_kubernetes_node_info", node="control-1", control_plane="true") == 1.0
    status = {
        labels: v for (name, labels), v in samples.items() if name == "preflight_requirement_status"
    }
    assert len(status) == 5 * 4
    assert sum(status.values()) == 5


def test_promtool_check_metrics_golden() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(PROMTOOL_MISSING)
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=GOLDEN.read_bytes(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""


def test_issuer_cn() -> None:
    assert issuer_cn("CN=Corp Inspection CA,O=Corp,C=DE") == "Corp Inspection CA"
    assert issuer_cn("O=Corp,CN=Inner") == "Inner"
    assert issuer_cn("CN=a\\,b\\+c+OU=x") == "a,b+c"
    assert issuer_cn("O=No Common Name Inc") == "O=No Common Name Inc"
    assert issuer_cn("CN=" + "x" * 100) == "x" * 64
    assert issuer_cn("") == ""


# ---------------------------------------------------------------- the node cache


def _with_state(view: Published, state: ClusterState, now: float) -> Published:
    return Published(
        state=state.snapshot(now), verdicts=view.verdicts, ready=view.ready, kube=view.kube
    )


def test_cache_reuses_unchanged_nodes_and_rerenders_changed_ones() -> None:
    state = ClusterState(LimitsConfig(), 30.0, 3, 120.0)
    for i in range(3):
        state.accept(pb.NodeReport(node_name=f"n{i}", sequence=1, egress=[egress_up("t")]), T0)
    base = Published(state=state.snapshot(T0), verdicts=(), ready=())
    exposition = Exposition()
    first = exposition.render(base)
    assert (exposition.hits, exposition.misses) == (0, 3)
    assert exposition.render(_with_state(base, state, T0 + 1)) == first
    assert (exposition.hits, exposition.misses) == (3, 3)

    # n1 reports a failure: only n1 is rendered again, and its new line is there.
    state.accept(
        pb.NodeReport(
            node_name="n1",
            sequence=2,
            egress=[egress_down("t", pb.REASON_DNS_NXDOMAIN, [pb.PHASE_RESOLVE])],
        ),
        T0 + 2,
    )
    view = _with_state(base, state, T0 + 2)
    text = exposition.render(view)
    assert (exposition.hits, exposition.misses) == (5, 4)
    assert b'preflight_egress_failure{node="n1",reason="dns_nxdomain",target="t"} 1.0' in text
    assert text == render_with_client(view)

    # Staleness is not in the report: it still invalidates the node's text.
    later = _with_state(base, state, T0 + 91)
    text = exposition.render(later)
    assert b'preflight_agent_up{node="n0"} 0.0' in text
    assert b'preflight_agent_up{node="n1"} 1.0' in text
    assert text == render_with_client(later)

    # Nodes the state forgot disappear from the exposition and from the cache.
    gone = _with_state(base, state, T0 + 121)
    text = exposition.render(gone)
    assert b'node="n0"' not in text and b'node="n1"' in text
    assert text == render_with_client(gone)


def test_cache_follows_allocatable_gpus_from_kubernetes() -> None:
    view = golden_view()
    exposition = Exposition()
    exposition.render(view)
    kube = KubeFacts(
        server_version=view.kube.server_version,
        nodes=tuple(
            n if n.name != "gpu-node-2" else KubeNode(**{**n.__dict__, "allocatable_gpus": 8})
            for n in view.kube.nodes
        ),
        error=None,
    )
    changed = Published(state=view.state, verdicts=view.verdicts, ready=view.ready, kube=kube)
    text = exposition.render(changed)
    assert b'preflight_node_gpus{node="gpu-node-2",source="allocatable"} 8.0' in text
    assert text == render_with_client(changed)


def test_module_render_is_the_cached_writer() -> None:
    assert render(golden_view()) == GOLDEN.read_bytes()


MOUNT_STATES_DRAWN = [pb.MOUNT_STATE_MOUNTED, pb.MOUNT_STATE_MISSING, pb.MOUNT_STATE_STUCK]
_names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@st.composite
def reports(draw: st.DrawFn) -> list[pb.NodeReport]:
    out = []
    for i, name in enumerate(draw(st.lists(_names.filter(str.strip), max_size=4, unique=True))):
        r = pb.NodeReport(node_name=name, sequence=1, agent_version=draw(_names))
        if draw(st.booleans()):
            r.hardware.CopyFrom(hardware(draw(st.integers(0, 512)), draw(st.integers(0, 2**45))))
        if draw(st.booleans()):
            r.gpus.pci_count = draw(st.integers(0, 16))
        for target in draw(st.lists(_names, max_size=3, unique=True)):
            if draw(st.booleans()):
                r.egress.append(egress_up(target, proxy=draw(st.booleans()), not_after=T0 + i))
            else:
                cert = pb.Certificate(issuer="CN=" + draw(_names), not_after=ts(T0 - i))
                r.egress.append(
                    egress_down(
                        target,
                        draw(st.sampled_from([pb.REASON_TLS_UNTRUSTED, pb.REASON_TIMEOUT])),
                        [pb.PHASE_RESOLVE],
                        cert,
                    )
                )
        for path in draw(st.lists(_names, max_size=2, unique=True)):
            r.mounts.append(
                mount(
                    path,
                    draw(st.sampled_from(MOUNT_STATES_DRAWN)),
                    pb.WRITE_CHECK_OK,
                    draw(st.integers(0, 3)),
                )
            )
        out.append(r)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports(), st.floats(-1e6, 1e6))
def test_any_state_renders_like_prometheus_client_and_parses(
    node_reports: list[pb.NodeReport], skew: float
) -> None:
    state = ClusterState(LimitsConfig(), 30.0, 3, 600.0)
    for r in node_reports:
        r.sent_at.CopyFrom(ts(T0 + skew))
        state.accept(r, T0)
    view = Published(state=state.snapshot(T0), verdicts=(), ready=(("install", True),))
    exposition = Exposition()
    text = exposition.render(view)
    assert text == render_with_client(view)
    assert exposition.render(view) == text  # from the cache
    parsed = {f.name: len(f.samples) for f in text_string_to_metric_families(text.decode())}
    assert parsed["preflight_agent_up"] == len(node_reports)


def test_the_cache_holds_each_node_compressed() -> None:
    # Held per node between scrapes: a family's short text as it is, a longer one
    # deflated on its own with its text's CRC-32 and size; a scrape lays them into the
    # body and writes exactly the same exposition.
    view = golden_view()
    exposition = Exposition()
    text = exposition.render(view)
    cached = [c.text for c in exposition._nodes.values()]
    assert cached
    deflated = plain = 0
    for node in cached:
        for slot, part in enumerate(node.parts):
            if node.plain & (1 << slot):
                assert len(part) <= PLAIN_MAX_BYTES and part in text
                continue
            # Not final (more of the stream follows it in a body): read as far as it goes.
            lines = zlib.decompressobj(-15).decompress(part)
            assert len(lines) > PLAIN_MAX_BYTES and lines in text
            assert node.sums[2 * slot : 2 * slot + 2].tolist() == [zlib.crc32(lines), len(lines)]
            deflated += len(part)
            plain += len(lines)
    assert plain and deflated < plain / 3
    assert exposition.render(view) == text


@pytest.mark.parametrize("long_nodes", [1, 3])
def test_a_family_long_at_some_nodes_and_short_at_others_renders_the_same(
    long_nodes: int,
) -> None:
    # One family kept plain at some nodes and deflated at others (more mounts there):
    # both ways of laying out such a column (by the majority kind) write the reference.
    state = ClusterState(LimitsConfig(), 30.0, 3, 300.0)
    for i in range(4):
        count = 8 if i < long_nodes else 1
        r = pb.NodeReport(
            node_name=f"node-{i}",
            instance_id="i",
            sequence=1,
            sent_at=ts(T0),
            hardware=hardware(8, 2**30),
        )
        r.mounts.extend(
            mount(f"/mnt/share-{k:02d}", pb.MOUNT_STATE_MOUNTED, pb.WRITE_CHECK_OK, 1)
            for k in range(count)
        )
        state.accept(r, T0)
    view = Published(state=state.snapshot(T0), verdicts=(), ready=(("install", True),))
    exposition = Exposition()
    text = exposition.render(view)
    slot = next(s for s, f in enumerate(_NODE_FAMILIES) if f.name == "preflight_mount_up")
    kinds = [bool(c.text.plain & (1 << slot)) for c in exposition._nodes.values()]
    assert sorted(kinds) == [False] * long_nodes + [True] * (4 - long_nodes)
    assert text == render_with_client(view)


def test_a_scrape_keeps_the_sums_of_unchanged_runs_and_writes_what_a_fresh_one_does() -> None:
    # More nodes than one run (RUN_NODES): after one node changes, the runs it is not in
    # are taken from the last scrape, the rest summed again; the text is a fresh render's.
    state = ClusterState(LimitsConfig(), 30.0, 3, 300.0)
    names = [f"node-{i:04d}" for i in range(2 * RUN_NODES + 10)]
    for name in names:
        state.accept(full_report(name), T0)
    exposition = Exposition()
    first = Published(state=state.snapshot(T0), verdicts=(), ready=(("install", True),))
    exposition.render(first)
    assert exposition.runs_kept == 0
    changed = full_report(names[RUN_NODES + 3], down={"quay.io": "connect_refused"})
    changed.sequence = 2
    state.accept(changed, T0 + 1)
    second = Published(state=state.snapshot(T0 + 1), verdicts=(), ready=(("install", True),))
    text = exposition.render(second)
    assert exposition.runs_kept > 0
    assert text == Exposition().render(second) == render_with_client(second)
    assert b'preflight_egress_failure{node="node-0259",reason="connect_refused"' in text
