"""cluster_domain_tls: the cluster domain serves a trusted certificate for its name.

Run:ai needs a trusted certificate matching the cluster's FQDN (the Secret
runai-cluster-domain-tls-secret; D1, G1/G2). Preflight never reads Secrets: with the
collector's `cluster_domain` set, every system node probes `https://<cluster domain>/`
(its probe plan carries the target `cluster-domain`) and the agent's egress probe judges
the TLS it is served against the node's trust store: verified, for that name, not
expired. Within 14 days of expiry warns.
"""

from __future__ import annotations

from collector.plan import system_nodes
from collector.rules.memo import PerReport
from collector.rules.model import Evidence, Verdict, count, names
from preflight.enums import REASONS
from preflight.plan import CLUSTER_DOMAIN_TARGET
from preflight.v1 import report_pb2 as pb

REQUIREMENT = "cluster_domain_tls"
EXPIRY_WARN_SECONDS = 14 * 86400
_TLS_WORDS = {
    "tls_untrusted": "untrusted certificate",
    "tls_hostname_mismatch": "certificate for another name",
    "tls_expired": "expired certificate",
    "tls_handshake_failed": "TLS handshake failed",
}

# (reached, failure reason name or "", certificate not_after in Unix seconds or None)
DomainResult = tuple[bool, str, float | None]


def _domain_result(report: pb.NodeReport) -> DomainResult | None:
    """The report's result for the cluster domain target; None where it did not probe it.

    Its own cache rather than the egress rules' (collector.rules.egress): only this one
    target, and the certificate's expiry, which those do not keep for every target.
    """
    result = next((e for e in report.egress if e.target == CLUSTER_DOMAIN_TARGET), None)
    if result is None:
        return None
    if result.outcome != pb.OUTCOME_UP:
        return False, REASONS.name(result.reason) if result.reason else "unknown", None
    cert = result.certificate
    if result.HasField("certificate") and cert.HasField("not_after"):
        return True, "", cert.not_after.ToNanoseconds() / 1e9
    return True, "", None


_RESULTS = PerReport(_domain_result)


def evaluate(view: Evidence) -> Verdict:
    domain = view.cluster_domain
    if not domain:
        return Verdict(
            REQUIREMENT,
            "unknown",
            "no cluster domain configured (collector setting cluster_domain)",
        )
    system = system_nodes(view.kube, view.profile.system_label)
    nodes = [n for n in view.live_nodes if system is None or n.name in system]
    if not nodes:
        return Verdict(REQUIREMENT, "unknown", "no system node's agent has reported recently")
    failures: list[str] = []
    unprobed: list[str] = []
    expiries: list[tuple[float, str]] = []
    for node, result in zip(nodes, _RESULTS(nodes), strict=True):
        if result is None:
            unprobed.append(node.name)
            continue
        reached, reason, not_after = result
        if not reached:
            failures.append(f"{node.name}: {_TLS_WORDS.get(reason, f'unreachable ({reason})')}")
            continue
        if not_after is not None:
            expiries.append((not_after, node.name))
    if failures:
        return Verdict(
            REQUIREMENT,
            "fail",
            f"https://{domain}/ from {count(len(failures), 'system node')}: {names(failures, 3)}",
            nodes=tuple(f.split(":", 1)[0] for f in failures),
            targets=(CLUSTER_DOMAIN_TARGET,),
        )
    if expiries:
        earliest, seen_by = min(expiries)
        days = (earliest - view.now) / 86400
        if earliest - view.now < EXPIRY_WARN_SECONDS:
            return Verdict(
                REQUIREMENT,
                "warn",
                f"the certificate of {domain} expires in {days:.1f} days (seen by {seen_by})",
                targets=(CLUSTER_DOMAIN_TARGET,),
            )
    if unprobed:
        return Verdict(
            REQUIREMENT,
            "unknown",
            f"{count(len(unprobed), 'system node')} did not probe https://{domain}/ yet: "
            f"{names(unprobed)}",
            nodes=tuple(unprobed),
        )
    left = f", {min(expiries)[0] / 86400 - view.now / 86400:.0f} days left" if expiries else ""
    return Verdict(
        REQUIREMENT,
        "pass",
        f"{domain} serves a trusted certificate for its name to "
        f"{count(len(nodes), 'system node')}{left}",
        targets=(CLUSTER_DOMAIN_TARGET,),
    )
