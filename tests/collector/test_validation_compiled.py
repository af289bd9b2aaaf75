"""Property: the compiled validation refuses what the descriptor walk refused, and only that.

collector.validation compiles each message type's checks into plain Python and skips
what a small sub-message cannot break; tests/support/validation_reference.py is the
walk it replaced. On arbitrary reports (tests/support/proto_strategies.py, biased
towards the caps, NaN, out-of-range timestamps, duplicates) both give the same reason
(or both accept), and an accepted report is shortened to the same message.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import validation
from collector.config import LimitsConfig
from preflight.v1 import report_pb2 as pb
from tests.support import validation_reference as reference
from tests.support.builders import report
from tests.support.proto_strategies import messages

NOW = time.time()
# Small caps too, so that a sub-message crosses the floors that choose a leaner check.
LIMITS = st.sampled_from(
    [
        LimitsConfig(),
        LimitsConfig(max_label_length=16, max_text_length=64, max_list_length=1),
        LimitsConfig(max_label_length=300, max_text_length=100, max_list_length=3),
    ]
)


Check = Callable[[pb.NodeReport, LimitsConfig, float], None]


def outcome(check: Check, message: pb.NodeReport, limits: LimitsConfig) -> tuple[str | None, bytes]:
    copy = pb.NodeReport()
    copy.CopyFrom(message)
    try:
        check(copy, limits, NOW)
    except validation.Rejected as rejection:
        return rejection.reason, b""
    return None, copy.SerializeToString(deterministic=True)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(message=messages(pb.NodeReport.DESCRIPTOR), limits=LIMITS)
def test_compiled_checks_agree_with_the_descriptor_walk(
    message: pb.NodeReport, limits: LimitsConfig
) -> None:
    message.node_name = message.node_name or "n"
    ours = outcome(validation.validate, message, limits)
    theirs = outcome(reference.validate, message, limits)
    assert ours == theirs


def _long_text_deep() -> pb.NodeReport:
    message = report("n")
    e = message.egress.add(target="t", outcome=pb.OUTCOME_DOWN, message="m" * 3000)
    e.certificate.dns_names.append("d" * 3000)
    return message


def _long_label() -> pb.NodeReport:
    message = report("n")
    message.agent_version = "v" * 300
    return message


def _nan_in_a_small_egress() -> pb.NodeReport:
    message = report("n")
    message.egress.add(target="t", total_seconds=float("nan"))
    return message


def _long_label_in_a_small_egress() -> pb.NodeReport:
    message = report("n")
    message.egress.add(target="t" * 257)
    return message


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (_long_text_deep, None),
        (_long_label, "label_too_long"),
        (_nan_in_a_small_egress, "invalid_number"),
        (_long_label_in_a_small_egress, "label_too_long"),
    ],
)
def test_known_cases_through_both(build: Callable[[], pb.NodeReport], reason: str | None) -> None:
    limits = LimitsConfig()
    ours = outcome(validation.validate, build(), limits)
    assert ours == outcome(reference.validate, build(), limits)
    assert ours[0] == reason


def test_long_text_deep_in_a_small_message_is_still_cut() -> None:
    # The message is over the floor only because of the long text: the full check runs.
    message = _long_text_deep()
    validation.validate(message, LimitsConfig(), NOW)
    assert len(message.egress[-1].message) == LimitsConfig().max_text_length
    assert message.egress[-1].message.endswith(validation.ELLIPSIS)
    assert len(message.egress[-1].certificate.dns_names[0]) == LimitsConfig().max_text_length


def _eight_gpus() -> pb.GpuFacts:
    gpus = pb.GpuFacts(pci_scanned=True, pci_count=8, driver_version="550.54.15")
    for k in range(8):
        bus = f"0000:{0x18 + k * 0x10:02x}:00.0"
        gpus.pci_devices.add(address=bus, vendor_id="0x10de", kernel_driver="nvidia")
        gpus.devices.add(index=k, uuid=f"GPU-{k}", name="NVIDIA H100 80GB HBM3", pci_bus_id=bus)
        gpus.kernel_gpus.add(bus_location=bus, model="NVIDIA H100 80GB HBM3")
    return gpus


def _with_gpus(message: pb.NodeReport, gpus: pb.GpuFacts) -> pb.NodeReport:
    copy = pb.NodeReport()
    copy.CopyFrom(message)
    copy.gpus.CopyFrom(gpus)
    return copy


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(message=messages(pb.NodeReport.DESCRIPTOR), limits=LIMITS)
def test_remembered_gpu_facts_change_no_outcome(
    message: pb.NodeReport, limits: LimitsConfig
) -> None:
    # Any report, its own GPU facts remembered (checked once already, passed or not), or
    # known-good GPU facts put into it: every outcome is the walk's, every time.
    message.node_name = message.node_name or "n"
    for candidate in (message, _with_gpus(message, _eight_gpus())):
        for _ in range(2):
            ours = outcome(validation.validate, candidate, limits)
            assert ours == outcome(reference.validate, candidate, limits)


def test_gpu_facts_are_checked_once_and_then_recognised() -> None:
    limits = LimitsConfig()
    gpus = _eight_gpus()
    gpus.driver_message = "first seen " + str(time.time_ns())  # not remembered by any test
    known = []
    for sequence in (1, 2, 3):
        message = _with_gpus(report("n"), gpus)
        message.sequence = sequence
        check = validation._Checks(limits, NOW)
        validation._check_report(message, None, check)
        validation._check_names(message, check.phases, check.known)
        validation.validate(message, limits, NOW)  # remembers them, as ingest does
        known.append(check.known)
    assert known == [False, True, True]


def test_gpu_facts_with_a_duplicate_are_never_remembered() -> None:
    limits = LimitsConfig()
    gpus = _eight_gpus()
    gpus.devices[1].index = 0
    gpus.driver_message = "duplicate " + str(time.time_ns())
    for _ in range(3):
        with pytest.raises(validation.Rejected) as refused:
            validation.validate(_with_gpus(report("n"), gpus), limits, NOW)
        assert refused.value.reason == "duplicate_name"


def test_gpu_facts_with_a_cut_text_are_not_remembered_cut() -> None:
    # A text cut changes the report: its GPU facts are remembered only as they arrived
    # when nothing was cut, so a second report is cut again, not waved through.
    limits = LimitsConfig()
    gpus = _eight_gpus()
    gpus.driver_message = "m" * (limits.max_text_length + 10)
    for _ in range(2):
        message = _with_gpus(report("n"), gpus)
        assert validation.validate(message, limits, NOW) is True
        assert len(message.gpus.driver_message) == limits.max_text_length


def test_remembered_digests_stay_bounded() -> None:
    limits = LimitsConfig(max_nodes=10)
    for i in range(100):
        gpus = _eight_gpus()
        gpus.driver_message = f"bounded {i}"
        validation.validate(_with_gpus(report("n"), gpus), limits, NOW)
        key = (limits.max_label_length, limits.max_text_length, limits.max_list_length)
        assert len(validation._VALID[key]) <= 2 * limits.max_nodes
