"""Concern `egress`: which node reaches which target, how, and why not.

/metrics: up, failure reason, phase durations, last success, proxy use, the untrusted
certificate, and cluster-wide the earliest certificate expiry per target and the mirrors.
JSON: the node's `egress` map (summary) and its `targets` (detail). Page: the node ×
target matrix, each cell the agent's outcome for that pair as it reported it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from sys import intern
from typing import Any

from collector.concerns.base import Concern, NodeJson, Page, Sample, Section, gauge
from collector.concerns.html import ago, esc, iso, millis, node_label, stale_class
from collector.published import Published
from collector.state import NodeEntry
from preflight.enums import PHASES, REASONS
from preflight.v1 import report_pb2 as pb

ISSUER_LABEL_MAX = 64
_NT = ("node", "target")

EGRESS_UP = gauge("preflight_egress_up", "1 when the node reaches the target.", _NT, True)
EGRESS_FAILURE = gauge(
    "preflight_egress_failure",
    "1 for the current failure reason of an unreachable target.",
    (*_NT, "reason"),
    True,
)
EGRESS_PHASE = gauge(
    "preflight_egress_phase_duration_seconds",
    "Duration of each phase reached in the last probe.",
    (*_NT, "phase"),
    True,
)
EGRESS_LAST_SUCCESS = gauge(
    "preflight_egress_last_success_timestamp_seconds",
    "Start of the last probe that reached the target.",
    _NT,
    True,
)
EGRESS_PROXY_USED = gauge(
    "preflight_egress_proxy_used", "1 when the probe went through a proxy.", _NT, True
)
EGRESS_UNTRUSTED = gauge(
    "preflight_egress_tls_untrusted_certificate_info",
    "The certificate presented when TLS did not verify (e.g. an inspecting proxy).",
    (*_NT, "issuer", "fingerprint_sha256"),
    True,
)
EGRESS_NOT_AFTER = gauge(
    "preflight_egress_tls_cert_not_after_timestamp_seconds",
    "Earliest certificate expiry seen for the target across nodes.",
    ("target",),
    False,
)
EGRESS_MIRROR = gauge(
    "preflight_egress_target_mirror_info",
    "1 for each profile target probed at a mirror (collector setting mirrors).",
    ("target", "origin", "mirror"),
    False,
)


def issuer_cn(issuer: str) -> str:
    """The issuer's common name from an RFC 4514 string, truncated for use as a label.

    Falls back to the whole string when there is no CN (a CA named by O/OU only).
    """
    attributes: list[str] = []
    current: list[str] = []
    chars = iter(issuer)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char in ",+":
            attributes.append("".join(current))
            current = []
        else:
            current.append(char)
    attributes.append("".join(current))
    for attribute in attributes:
        key, sep, value = attribute.partition("=")
        if sep and key.strip().upper() == "CN":
            return value.strip()[:ISSUER_LABEL_MAX]
    return issuer[:ISSUER_LABEL_MAX]


def node_samples(
    node: NodeEntry, allocatable_gpus: int | None, expected_plan: str | None
) -> Iterator[Sample]:
    name = node.name
    for e in node.report.egress:
        key = (name, e.target)
        is_up = e.outcome == pb.OUTCOME_UP
        yield EGRESS_UP, key, 1.0 if is_up else 0.0
        yield EGRESS_PROXY_USED, key, 1.0 if e.proxy_used else 0.0
        if not is_up and e.reason:
            yield EGRESS_FAILURE, (*key, REASONS.name(e.reason)), 1.0
        for timing in e.phases:
            yield EGRESS_PHASE, (*key, PHASES.name(timing.phase)), timing.duration_seconds
        if e.reason == pb.REASON_TLS_UNTRUSTED and e.HasField("certificate"):
            cert = e.certificate
            yield EGRESS_UNTRUSTED, (*key, issuer_cn(cert.issuer), cert.sha256_fingerprint), 1.0
    for target, seconds in node.last_success:
        yield EGRESS_LAST_SUCCESS, (name, target), seconds


def node_cert_expiries(node: NodeEntry) -> dict[str, float]:
    """Target → earliest leaf certificate notAfter this node saw (Unix seconds)."""
    earliest: dict[str, float] = {}
    for e in node.report.egress:
        if e.HasField("certificate") and e.certificate.HasField("not_after"):
            expiry = e.certificate.not_after.ToNanoseconds() / 1e9
            # Interned: kept with every node's cached text, and every node names the
            # same targets.
            target = intern(e.target)
            earliest[target] = min(expiry, earliest.get(target, expiry))
    return earliest


def cluster_samples(view: Published, expiries: Iterable[dict[str, float]]) -> Iterator[Sample]:
    earliest: dict[str, float] = {}
    for per_node in expiries:
        for target, expiry in per_node.items():
            earliest[target] = min(expiry, earliest.get(target, expiry))
    for target, expiry in sorted(earliest.items()):
        yield EGRESS_NOT_AFTER, (target,), expiry
    for m in view.mirrors:
        yield EGRESS_MIRROR, (m.target, m.origin, m.address), 1.0


def target_json(
    e: pb.EgressResult, last_success: float | None, mirror: str | None = None
) -> dict[str, Any]:
    """One egress result with lower-case enum names, as operators read them.

    `mirror` is the host:port the target is probed at instead (collector setting mirrors).
    """
    up = e.outcome == pb.OUTCOME_UP
    return {
        "target": e.target,
        "mirror": mirror,
        "up": up,
        "reason": "" if up else REASONS.name(e.reason),
        "failed_phase": "" if up else PHASES.name(e.failed_phase),
        "message": e.message,
        "phases": {PHASES.name(p.phase): p.duration_seconds for p in e.phases},
        "total_seconds": e.total_seconds,
        "time_to_first_byte_seconds": e.time_to_first_byte_seconds,
        "http_status": e.http_status,
        "proxy_used": e.proxy_used,
        "proxy": e.proxy,
        "last_success": last_success,
    }


def summary(node: NodeEntry, ctx: NodeJson) -> dict[str, Any]:
    return {
        "egress": {
            e.target: "up" if e.outcome == pb.OUTCOME_UP else REASONS.name(e.reason)
            for e in node.report.egress
        }
    }


def detail(node: NodeEntry, ctx: NodeJson) -> dict[str, Any]:
    last_success = dict(node.last_success)
    mirrors = ctx.mirror_of
    return {
        "targets": [
            target_json(e, last_success.get(e.target), mirrors.get(e.target))
            for e in node.report.egress
        ]
    }


def _mirror_tag(mirror: str | None) -> str:
    # The column keeps the profile's name; the tag says where it is really probed.
    if mirror is None:
        return ""
    return f'<br><small class="mirror" title="probed at its mirror">mirror {esc(mirror)}</small>'


def matrix(page: Page, nodes: tuple[NodeEntry, ...]) -> str:
    now = page.now
    # Columns: the union of reported targets, in the order agents report them
    # (agents share the profile's order, so this reads like the profile).
    targets: dict[str, str] = {}
    for node in nodes:
        for reported in node.report.egress:
            if reported.target not in targets:
                targets[reported.target] = esc(reported.target)
    if not targets:
        return (
            '<h2>Egress</h2><p id="egress-matrix" class="muted">No egress results reported yet.</p>'
        )
    down_cells = 0
    down_nodes = 0
    rows = []
    for node in nodes:
        results = {e.target: e for e in node.report.egress}
        last_up = dict(node.last_success)
        name = esc(node.name)
        cells = [f'<th class="node">{node_label(node)}</th>']
        node_down = False
        for target, target_attr in targets.items():
            where = f'data-node="{name}" data-target="{target_attr}"'
            e = results.get(target)
            if e is None:
                cells.append(f'<td class="cell-none" {where} title="not probed here">—</td>')
            elif e.outcome == pb.OUTCOME_UP:
                ttfb = e.time_to_first_byte_seconds or e.total_seconds
                detail = f"HTTP {e.http_status}, total {millis(e.total_seconds)}"
                if e.proxy_used:
                    detail += f", via proxy {e.proxy}"
                cells.append(
                    f'<td class="cell-up" {where} title="{esc(detail)}">up '
                    f"<small>{millis(ttfb)}</small></td>"
                )
            else:
                down_cells += 1
                node_down = True
                reason = REASONS.name(e.reason) or "down"
                phase = PHASES.name(e.failed_phase)
                title = e.message or reason
                if target in last_up:
                    title += f" — last up {ago(last_up[target], now)} ({iso(last_up[target])})"
                else:
                    title += " — never up since the collector started"
                at = f"<small> at {esc(phase)}</small>" if phase else ""
                cells.append(
                    f'<td class="cell-down" {where} data-reason="{esc(reason)}" '
                    f'title="{esc(title)}">{esc(reason)}{at}</td>'
                )
        down_nodes += node_down
        rows.append(f"<tr{stale_class(node)}>{''.join(cells)}</tr>")
    # Long host names break after dots and slashes rather than mid-word.
    mirrors = page.data.mirror_of
    head = "".join(
        f"<th>{t.replace('.', '.<wbr>').replace('/', '/<wbr>')}{_mirror_tag(mirrors.get(k))}</th>"
        for k, t in targets.items()
    )
    summary = (
        f"{down_cells} node×target pairs down on {down_nodes} of {len(nodes)} nodes"
        if down_cells
        else f"every node reaches every target ({len(nodes)} × {len(targets)})"
    )
    return (
        f'<h2>Egress</h2><p class="meta">{summary}; a red cell names the failure reason '
        "and the phase it failed in (hover for the message); green shows time to first byte.</p>"
        f'<table id="egress-matrix"><thead><tr><th>node</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


MATRIX = Section("egress-matrix", matrix, nav="egress")

CONCERN = Concern(
    name="egress",
    families=(
        EGRESS_UP,
        EGRESS_FAILURE,
        EGRESS_PHASE,
        EGRESS_LAST_SUCCESS,
        EGRESS_PROXY_USED,
        EGRESS_UNTRUSTED,
        EGRESS_NOT_AFTER,
        EGRESS_MIRROR,
    ),
    node_samples=node_samples,
    cluster_samples=cluster_samples,
    summary=summary,
    detail=detail,
    sections=(MATRIX,),
)
