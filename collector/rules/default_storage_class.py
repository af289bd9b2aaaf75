"""default_storage_class: exactly one StorageClass is the default.

Run:ai 2.20+ control planes need a default StorageClass (their databases claim volumes
without naming a class). Several defaults are legal but ambiguous: Kubernetes picks the
newest, which is rarely what was meant.
"""

from __future__ import annotations

from collector.rules.model import Evidence, Verdict, count, names

REQUIREMENT = "default_storage_class"


def evaluate(view: Evidence) -> Verdict:
    platform = view.platform_or_unknown(REQUIREMENT)
    if isinstance(platform, Verdict):
        return platform
    read = platform.storage
    if read.state == "not_installed":
        return Verdict(
            REQUIREMENT, "fail", "no StorageClass API (storage.k8s.io/v1) on this cluster"
        )
    if not read.ok:
        return Verdict(REQUIREMENT, "unknown", read.describe("StorageClasses"))
    classes = platform.storage_classes
    defaults = [c.name for c in classes if c.default]
    if not classes:
        return Verdict(REQUIREMENT, "fail", "no StorageClass at all")
    if not defaults:
        shown = names([c.name for c in classes])
        return Verdict(
            REQUIREMENT,
            "fail",
            f"no default StorageClass among {count(len(classes), 'StorageClass')} ({shown})",
        )
    if len(defaults) > 1:
        return Verdict(
            REQUIREMENT,
            "warn",
            f"{len(defaults)} StorageClasses are marked default ({names(defaults)}): "
            "Kubernetes uses the newest",
        )
    provisioner = next(c.provisioner for c in classes if c.default)
    return Verdict(REQUIREMENT, "pass", f"default StorageClass {defaults[0]} ({provisioner})")
