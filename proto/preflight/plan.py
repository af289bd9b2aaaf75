"""The probe plan: what an agent probes, derived from a requirement profile.

The collector derives each node's plan from its profile and the node's roles and
sends it in every ReportAck; an agent without an ack yet (or in --once mode) derives
the same plan from the profile packaged with it. Both go through `plan_from_profile`,
so equal inputs give byte-equal plans and equal content versions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from preflight.mirrors import Mirror
from preflight.profile import Profile
from preflight.v1 import report_pb2 as pb

SCOPES = {"all": pb.TARGET_SCOPE_ALL, "system": pb.TARGET_SCOPE_SYSTEM}
# Enough to tell plans apart in a label or a log line; not a security property.
VERSION_HEX_DIGITS = 16


def content_version(plan: pb.ProbePlan) -> str:
    """A digest of everything in `plan` except its version field."""
    body = pb.ProbePlan()
    body.CopyFrom(plan)
    body.ClearField("version")
    return hashlib.sha256(body.SerializeToString(deterministic=True)).hexdigest()[
        :VERSION_HEX_DIGITS
    ]


# The egress target a system node probes at the cluster domain (cluster_domain_tls).
CLUSTER_DOMAIN_TARGET = "cluster-domain"


def plan_from_profile(
    profile: Profile,
    *,
    system: bool,
    cluster_domain: str = "",
    mirrors: Sequence[Mirror] = (),
) -> pb.ProbePlan:
    """The plan of a node: every `all` target, the `system` ones only on system nodes.

    With a `cluster_domain` (a collector setting) system nodes also probe
    `https://<cluster domain>/`: the certificate it serves is what cluster_domain_tls judges.
    A mirrored target (collector setting `mirrors`) is probed at its mirror's host and
    port; everything else about it (name, path, expectations, scope) stays the profile's.
    """
    plan = pb.ProbePlan(profile=profile.name)
    mirrored = {m.target: m for m in mirrors}
    for t in profile.egress.targets:
        if t.scope == "system" and not system:
            continue
        mirror = mirrored.get(t.name)
        plan.egress_targets.add(
            name=t.name,
            host=mirror.host if mirror else t.host,
            port=mirror.port if mirror else t.port,
            path=t.path,
            phase=t.phase,
            expect_status=t.expect_status,
            require_header_for=t.require_header_for,
            scope=SCOPES[t.scope],  # type: ignore[arg-type]
        )
    if cluster_domain and system:
        plan.egress_targets.add(
            name=CLUSTER_DOMAIN_TARGET,
            host=cluster_domain,
            port=443,
            path="/",
            phase="runtime",
            scope=pb.TARGET_SCOPE_SYSTEM,
        )
    for path in profile.shared_volume.paths:
        plan.shared_volumes.add(path=path, write_expected=profile.shared_volume.write_expected)
    plan.version = content_version(plan)
    return plan
