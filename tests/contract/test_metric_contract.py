"""The settled metric names of DESIGN.md §4 stay exposed, whatever else is added."""

from __future__ import annotations

from tests.support.promql import CONTRACT_METRICS

# DESIGN.md §4 "Metrics": settled public names (extend freely, rename never).
SETTLED = {
    "preflight_requirement_status",
    "preflight_cluster_ready",
    "preflight_egress_up",
    "preflight_egress_failure",
    "preflight_egress_phase_duration_seconds",
    "preflight_egress_last_success_timestamp_seconds",
    "preflight_egress_tls_cert_not_after_timestamp_seconds",
    "preflight_node_cpu_cores",
    "preflight_node_memory_bytes",
    "preflight_node_gpus",
    "preflight_node_info",
    "preflight_mount_up",
    "preflight_mount_writable",
    "preflight_mount_stuck",
    "preflight_mount_peers_visible",
    "preflight_agent_up",
    "preflight_agent_last_report_timestamp_seconds",
}


def test_settled_metrics_are_exposed() -> None:
    assert set() == SETTLED - CONTRACT_METRICS
    assert all(name.startswith("preflight_") for name in CONTRACT_METRICS)
