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
