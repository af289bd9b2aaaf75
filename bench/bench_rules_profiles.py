"""Benchmark: judging every requirement of each shipped profile at 100 to 10,000 nodes.

Builds plain rule inputs (no I/O): N Kubernetes nodes (a tenth GPU nodes with the GFD
label set, three system nodes), an agent report per node, and the add-on facts of a
healthy 2026 cluster, then times `collector.rules.evaluate_all` for each profile (the
service does this once per evaluation interval, in a worker thread). Prints the median
of `--repeat` runs in milliseconds. Not part of `make test`.

Run: .venv/bin/python bench/bench_rules_profiles.py [--sizes 100,1000,10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from collector.kube.facts import KubeFacts
from collector.rules import evaluate_all
from preflight.profile import load_profile, shipped_profiles
from tests.collector.test_rules_runai import GFD, healthy_platform, node, system
from tests.support.builders import NOW, entry, report, view


def cluster(size: int) -> tuple[KubeFacts, list[object]]:
    nodes = [system(f"sys-{i}") for i in range(3)]
    for i in range(size - 3):
        if i % 10 == 0:
            nodes.append(
                node(f"gpu-{i:05d}", roles=("runai-gpu-worker",), gpus=8, nvidia_labels=GFD)
            )
        else:
            nodes.append(node(f"cpu-{i:05d}"))
    entries = [entry(report(n.name, pci=n.capacity_gpus, driver=n.capacity_gpus)) for n in nodes]
    kube = KubeFacts(
        server_version="v1.34.2",
        nodes=tuple(nodes),
        error=None,
        fetched_at=NOW,
        platform=healthy_platform(),
    )
    return kube, entries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    names = sorted(shipped_profiles(), key=lambda n: (n != "runai-2020", n))
    print(f"{'nodes':>6} " + " ".join(f"{n:>11}" for n in names) + "   (ms, median)")
    for size in (int(s) for s in args.sizes.split(",")):
        kube, entries = cluster(size)
        base = view(*entries, kube=kube)  # type: ignore[arg-type]
        row = []
        for name in names:
            judged = dataclasses.replace(base, profile=load_profile(name))
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                evaluate_all(judged)
                times.append((time.perf_counter() - start) * 1000)
            row.append(statistics.median(times))
        print(f"{size:>6} " + " ".join(f"{t:>11.1f}" for t in row))


if __name__ == "__main__":
    main()
