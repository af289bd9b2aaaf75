"""The ReportAck as assembled bytes (collector/ingest.py AckEncoder).

Property: for any plan (or none), heartbeat interval and clock, the assembled bytes are
what building and serializing the message gives, byte for byte, and they parse to that
message. The part shared by every node of one plan is serialized once per plan object,
a replaced plan (a profile reload) is answered at once, and the cache stays bounded.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest import _ACK_TAILS_KEPT, AckEncoder
from collector.service import CollectorService
from preflight.v1 import report_pb2 as pb
from tests.support.ingest_calls import report, send

# Beyond year 9999 protobuf's Timestamp has no value: the collector's clock is before.
CLOCKS = st.one_of(
    st.integers(min_value=0, max_value=253_402_300_799 * 10**9 + 999_999_999),
    st.just(time.time_ns()),
    st.sampled_from([0, 1, 999_999_999, 10**9, 10**9 + 1]),
)


TEXT = st.text(max_size=40)
TARGETS = st.builds(
    pb.PlanTarget,
    name=TEXT,
    host=TEXT,
    port=st.integers(0, 2**32 - 1),
    path=TEXT,
    phase=st.sampled_from(["install", "runtime", ""]),
    expect_status=st.lists(st.integers(0, 2**32 - 1), max_size=4),
    require_header_for=st.dictionaries(st.integers(0, 2**32 - 1), TEXT, max_size=3),
    scope=st.integers(0, 3),
)
PLANS = st.builds(
    pb.ProbePlan,
    version=TEXT,
    profile=TEXT,
    egress_targets=st.lists(TARGETS, max_size=8),
    shared_volumes=st.lists(st.builds(pb.PlanVolume, path=TEXT, write_expected=st.booleans())),
)


def built(plan: pb.ProbePlan | None, heartbeat: float, now_ns: int) -> pb.ReportAck:
    """The ack as the handler built it before it was assembled."""
    ack = pb.ReportAck(heartbeat_interval_seconds=heartbeat)
    ack.collector_time.FromNanoseconds(now_ns)
    if plan is not None:
        ack.plan.CopyFrom(plan)
    return ack


@settings(max_examples=300, deadline=None)
@given(plan=st.none() | PLANS, heartbeat=st.floats(allow_nan=False), now_ns=CLOCKS)
def test_assembled_ack_is_the_serialized_message(
    plan: pb.ProbePlan | None, heartbeat: float, now_ns: int
) -> None:
    encoder = AckEncoder(heartbeat)
    expected = built(plan, heartbeat, now_ns)
    # A map's entries are serialized in no fixed order (protobuf's own bytes differ
    # between two copies of one plan); without one the bytes are protobuf's exactly.
    ordered = plan is None or not any(t.require_header_for for t in plan.egress_targets)
    for _ in range(2):  # the first call serializes the tail, the second reuses it
        assembled = encoder.encode(plan, now_ns)
        assert pb.ReportAck.FromString(assembled) == expected
        assert len(assembled) == expected.ByteSize()
        if ordered:
            assert assembled == expected.SerializeToString()


def test_one_plan_is_serialized_once_and_a_new_plan_is_answered_at_once() -> None:
    encoder = AckEncoder(30.0)
    old = pb.ProbePlan(version="v1", profile="p")
    first = encoder.encode(old, 1)
    tail = encoder._tails[id(old)][1]
    for now_ns in range(2, 50):
        encoder.encode(old, now_ns)
    assert encoder._tails[id(old)][1] is tail  # the same bytes object: not serialized again
    assert first.endswith(tail)
    new = pb.ProbePlan(version="v2", profile="p")
    assert pb.ReportAck.FromString(encoder.encode(new, 60)).plan == new
    assert pb.ReportAck.FromString(encoder.encode(old, 61)).plan == old


def test_the_tail_cache_stays_bounded_across_many_plans() -> None:
    encoder = AckEncoder(30.0)
    plans = [pb.ProbePlan(version=f"v{i}") for i in range(10 * _ACK_TAILS_KEPT)]
    for i, plan in enumerate(plans):
        assert pb.ReportAck.FromString(encoder.encode(plan, i)).plan.version == f"v{i}"
        assert len(encoder._tails) <= _ACK_TAILS_KEPT


async def test_a_real_ack_carries_the_nodes_plan_heartbeat_and_clock(
    collector: CollectorService,
) -> None:
    before = time.time_ns()
    ack = await send(collector, report(name="node-a"))
    after = time.time_ns()
    assert ack.plan == collector.plans.for_node("node-a")
    assert ack.plan.version  # a real plan, not an empty message
    assert ack.heartbeat_interval_seconds == collector.config.heartbeat_interval
    assert before <= ack.collector_time.ToNanoseconds() <= after
