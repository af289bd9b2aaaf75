"""The observer loop's judging is amortised: a costly judging delays the next one.

After a judging that cost `c` CPU-seconds the loop's next judging waits c /
JUDGING_CPU_SHARE seconds (so judging takes at most that share of a core from ingest);
a direct observe() always judges, and a skipped observation does not pretend the
verdicts are newer than they are.
"""

from __future__ import annotations

import time

from collector.config import CollectorConfig, ListenConfig
from collector.service import JUDGING_CPU_SHARE, CollectorService
from tests.support.builders import report


def _service() -> CollectorService:
    return CollectorService(
        CollectorConfig(listen=ListenConfig(grpc="127.0.0.1:0", http="127.0.0.1:0"))
    )


def _accept(service: CollectorService, name: str) -> None:
    message = report(name)
    message.sent_at.GetCurrentTime()
    service.state.accept(message, time.time())


def coverage(service: CollectorService) -> str:
    [verdict] = [v for v in service._verdicts if v.requirement == "agent_coverage"]
    return verdict.reason


async def test_a_costly_judging_delays_the_loops_next_one() -> None:
    service = _service()
    _accept(service, "node-a")
    await service.observe(amortised=True)
    assert service.judging_cpu_seconds > 0
    judged = service._judged_at
    assert [v.requirement for v in service._verdicts]
    # Pretend that judging cost a minute of CPU: the loop waits five (share 0.2).
    service.judging_cpu_seconds = 60.0
    service._judge_not_before = time.time() + 60.0 / JUDGING_CPU_SHARE
    _accept(service, "node-b")
    await service.observe(amortised=True)
    assert service._judged_at == judged  # not judged, and not claimed current
    assert coverage(service) == "every node reports (1 node)"
    # A direct observation judges at once, and sees node-b.
    await service.observe()
    assert service._judged_at > judged
    assert coverage(service) == "every node reports (2 nodes)"


async def test_the_wait_follows_the_measured_cpu_time() -> None:
    service = _service()
    _accept(service, "node-a")
    before = time.time()
    await service.observe(amortised=True)
    wait = service._judge_not_before - before
    assert 0 < service.judging_cpu_seconds / JUDGING_CPU_SHARE <= wait + 1e-6
