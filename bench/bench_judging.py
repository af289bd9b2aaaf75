"""Benchmark: the judging's CPU time at N nodes, cold, warm, on heartbeats and on churn.

In process, no gRPC: N nodes of bench_ingest's report shape (an 8-GPU node, 7 egress
targets, 2 NAS mounts with peer markers) stored in a ClusterState (30 s heartbeat,
standalone unless --kube, profile runai-2020 unless --profile), then one judging per
scenario:

- cold: the first judging of the N nodes (the rules' per-report caches empty);
- warm: the same snapshot judged again, one second later (nothing reported);
- heartbeat: 1/30 of the nodes re-reported (new sequence and timestamps, the same
  content), one second later: what a 30 s heartbeat brings every second;
- churn: 0.2 % of the nodes re-reported with one target flipped;
- second: both at once, as bench_ingest's collector sees every second.

Each scenario is judged by `evaluate_isolated` in process and through a JudgingProcess
(a real child): the CPU time of the parent's thread (time.thread_time) plus the child's
CPU time (its own process clock, sent with each answer; /proc's user+system in 10 ms
ticks for a collector without it), unpickling included; in brackets the parent's part
alone (what the collector's own process, ingest's GIL, spends on it). Figures are the
mean of --rounds judgings (each on fresh reports); verdicts of both ways are checked
equal on every judging.

Before/after in one run: --source NAME=DIR (repeatable) judges with the collector of
another tree (e.g. `git archive main | tar -x -C /tmp/before`), each in its own process,
one after the other per size.

Run: .venv/bin/python bench/bench_judging.py [--sizes 1000,10000] [--rounds 15]
     [--source main=/tmp/before --source branch=.] [--profile runai-2.25 --kube]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HEARTBEAT = 30.0
CHURN = 0.002
SCENARIOS = ("cold", "warm", "heartbeat", "churn", "second")


def _kube(n: int, at: float) -> Any:
    """A Kubernetes view of the N nodes: 3 control-plane nodes, 3 system nodes, GPU nodes."""
    from collector.kube.facts import KubeFacts, KubeNode

    sys.path.insert(0, str(REPO / "bench"))
    from bench_ingest import node_name

    def node(i: int) -> KubeNode:
        control_plane, system = i < 3, 3 <= i < 6
        return KubeNode(
            name=node_name(i),
            control_plane=control_plane,
            roles=("control-plane",) if control_plane else ("runai-system",) if system else (),
            taints=("node-role.kubernetes.io/control-plane=:NoSchedule",) if control_plane else (),
            capacity_cpu=96.0,
            capacity_memory_bytes=768 << 30,
            capacity_gpus=8,
            allocatable_cpu=95.0,
            allocatable_memory_bytes=760 << 30,
            allocatable_gpus=8,
            kubelet_version="v1.31.4",
            container_runtime_version="containerd://1.7.27",
            ready=True,
            capacity_ephemeral_storage_bytes=1 << 40,
            nvidia_labels=(("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),),
        )

    return KubeFacts("v1.31.4", tuple(map(node, range(n))), None, at)


def _measure(n: int, rounds: int, profile_name: str, kube: bool) -> dict[str, Any]:
    """This process's collector (whatever sys.path gives): one row per scenario."""
    import psutil  # type: ignore[import-untyped]

    from collector.config import LimitsConfig
    from collector.isolation import FaultLog
    from collector.judging import evaluate_isolated
    from collector.judging_process import JudgingProcess
    from collector.kube.facts import STANDALONE
    from collector.rules.model import Evidence
    from collector.state import ClusterState
    from preflight.profile import load_profile

    # After the collector's imports: bench_ingest puts this tree first on sys.path.
    sys.path.insert(0, str(REPO / "bench"))
    from bench_ingest import TARGETS, make_report, node_name

    profile = load_profile(profile_name)
    state = ClusterState(LimitsConfig(max_nodes=n + 10, max_state_bytes=1 << 30), HEARTBEAT, 3, 600)
    sequence = [1] * n
    down = [frozenset[str]()] * n
    clock = [time.time()]

    def report(i: int) -> None:
        message = make_report(node_name(i), node_name((i + 1) % n), sequence[i], down[i])
        raw = message.SerializeToString()
        state.accept(message, clock[0], raw=raw)

    for i in range(n):
        report(i)

    facts = _kube(n, clock[0]) if kube else STANDALONE

    def view() -> Evidence:
        return Evidence(state=state.snapshot(clock[0]), profile=profile, now=clock[0], kube=facts)

    child = JudgingProcess()
    child.start()
    proc: Any = None

    def child_cpu() -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    def judge_in_process(v: Evidence) -> tuple[float, Any]:
        started = time.thread_time()
        judgement = evaluate_isolated(v, FaultLog())
        return time.thread_time() - started, judgement

    answered = [0.0]  # the child's process CPU time at its last answer

    def judge_in_child(v: Evidence) -> tuple[float, Any]:
        before_child = child_cpu()
        started = time.thread_time()
        judged = child.evaluate(v)
        parent = time.thread_time() - started
        rows[scenario_now[0]]["parent"].append(parent)
        assert judged is not None, "the judging process gave no answer"
        # The child's own clock where it tells it (exact; /proc counts in 10 ms ticks).
        at = getattr(judged, "process_cpu_seconds", 0.0)
        spent, answered[0] = (at - answered[0] if at else child_cpu() - before_child), at
        return parent + spent, judged.judgement

    # The child's imports and first answer, on an empty state: not part of any scenario.
    from collector.state import AgentReports

    empty = AgentReports(clock[0], (), 90.0, HEARTBEAT, 0, (), 0)
    first = child.evaluate(Evidence(state=empty, profile=profile, now=clock[0]))
    answered[0] = getattr(first, "process_cpu_seconds", 0.0)
    proc = psutil.Process(child.child.pid)

    rows: dict[str, dict[str, list[float]]] = {
        s: {"in_process": [], "child": [], "parent": []} for s in SCENARIOS
    }
    scenario_now = ["cold"]
    heartbeat_share = max(1, round(n / HEARTBEAT))
    churned = max(1, int(n * CHURN))
    cursor = 0

    def judge(scenario: str) -> None:
        scenario_now[0] = scenario
        v = view()
        cpu_p, judged_p = judge_in_process(v)
        cpu_c, judged_c = judge_in_child(v)
        assert judged_p == judged_c, f"{scenario}: the child judged otherwise"
        rows[scenario]["in_process"].append(cpu_p)
        rows[scenario]["child"].append(cpu_c)

    judge("cold")
    for _ in range(rounds):
        clock[0] += 1.0
        judge("warm")
        for kind in ("heartbeat", "churn", "second"):
            clock[0] += 1.0
            if kind in ("heartbeat", "second"):
                for _ in range(heartbeat_share):
                    i = cursor % n
                    cursor += 1
                    sequence[i] += 1
                    report(i)
            if kind in ("churn", "second"):
                for k in range(churned):
                    i = (cursor * 7 + k * 997) % n
                    sequence[i] += 1
                    down[i] = down[i] ^ {TARGETS[(cursor + k) % len(TARGETS)]}
                    report(i)
            judge(kind)
    child.close()
    return {
        "nodes": n,
        "ms": {
            s: {way: round(1e3 * statistics.mean(v), 2) for way, v in ways.items()}
            for s, ways in rows.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--profile", default="runai-2020")
    parser.add_argument(
        "--kube", action="store_true", help="with a Kubernetes view of every node (no add-ons)"
    )
    parser.add_argument(
        "--source", action="append", default=[], help="NAME=DIR: judge with DIR's collector"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a size, in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(args.one, args.rounds, args.profile, args.kube)))
        return
    sources = [s.split("=", 1) for s in args.source] or [["this", str(REPO)]]
    print(
        f"load average {os.getloadavg()[0]:.2f}; CPU ms per judging, mean of {args.rounds}: "
        "in process / through the child (its parent's part)"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        for name, directory in sources:
            source = Path(directory).resolve()
            env = {**os.environ, "PYTHONPATH": f"{source}{os.pathsep}{source / 'proto'}"}
            out = subprocess.run(
                [
                    sys.executable,
                    "-P",
                    __file__,
                    "--one",
                    str(size),
                    "--rounds",
                    str(args.rounds),
                    "--profile",
                    args.profile,
                    *(["--kube"] if args.kube else []),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            cells = "  ".join(
                f"{s} {row['ms'][s]['in_process']:.1f}/{row['ms'][s]['child']:.1f}"
                f" ({row['ms'][s]['parent']:.1f})"
                for s in SCENARIOS
            )
            print(f"{size:>6} nodes  {name:<8} {cells}", flush=True)


if __name__ == "__main__":
    main()
