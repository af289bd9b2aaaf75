"""Cost of the status page's GPU capacity section and of the capacity series at scale.

Builds N nodes from the 3-node, 2-model capacity cluster (reports made by the agent's GPU
code with the fake NVML, 8 GPUs each) and prints, best of 5: the whole status page with
and without the GPU capacity section, the section alone, and a cold /metrics render.
Prints figures only; nothing is asserted (docs/performance.md records them).

    .venv/bin/python bench/bench_capacity.py [--nodes 1000]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.concerns import PAGE, Page
from collector.concerns.capacity import GPU_CAPACITY
from collector.exposition import Exposition
from collector.statuspage import render_status_page
from tests.support.builders import entry
from tests.support.capacity_cluster import capacity_reports, capacity_view


def best(f: Callable[[], object], runs: int = 5) -> float:
    fastest = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        f()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    reports = capacity_reports()
    entries = []
    for i in range(args.nodes):
        report = copy.deepcopy(reports[i % len(reports)])
        report.node_name = f"node-{i:05d}"
        entries.append(entry(report))
    view = capacity_view(tuple(entries))
    others = tuple(s for s in PAGE if s is not GPU_CAPACITY)
    page = best(lambda: render_status_page(view))
    without = best(lambda: render_status_page(view, others))
    alone = best(lambda: GPU_CAPACITY.render(Page(view, {}, ()), view.state.nodes))
    metrics = best(lambda: Exposition().render(view), 3)
    lines = Exposition().render(view).count(b"\n")
    print(f"{args.nodes} GPU nodes (8 GPUs each)")
    print(f"status page with GPU capacity   {page * 1000:8.1f} ms")
    print(f"status page without it          {without * 1000:8.1f} ms")
    print(f"GPU capacity section alone      {alone * 1000:8.1f} ms")
    print(f"/metrics, cold cache            {metrics * 1000:8.1f} ms ({lines} lines)")


if __name__ == "__main__":
    main()
