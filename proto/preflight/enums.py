"""Lower-case names of the wire enums, as used in metric labels, JSON and the CLI.

The proto enums carry a prefix (`REASON_`, `PHASE_`, ...) because proto3 enum
values share one namespace; everything user-facing uses the bare lower-case name.
"""

from __future__ import annotations

from preflight.v1 import report_pb2 as pb

UNKNOWN = "unknown"


class EnumNames:
    """Two-way mapping between an enum's numbers and its user-facing names."""

    def __init__(self, enum: str, prefix: str, zero_name: str = "") -> None:
        self._by_number: dict[int, str] = {}
        for value in pb.DESCRIPTOR.enum_types_by_name[enum].values:
            name, number = value.name, value.number
            self._by_number[number] = (
                zero_name if number == 0 else name.removeprefix(prefix).lower()
            )
        self._by_name = {name: number for number, name in self._by_number.items() if name}

    def name(self, number: int) -> str:
        # A value from a newer agent's .proto is kept and named, never a crash or a blank.
        return self._by_number.get(number, UNKNOWN)

    def number(self, name: str) -> int:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for number, name in sorted(self._by_number.items()) if number)


REASONS = EnumNames("FailureReason", "REASON_")
PHASES = EnumNames("Phase", "PHASE_")
MOUNT_STATES = EnumNames("MountState", "MOUNT_STATE_")
WRITE_CHECKS = EnumNames("WriteCheck", "WRITE_CHECK_")
DRIVER_STATUSES = EnumNames("DriverStatus", "DRIVER_STATUS_")
KERNEL_MODULES = EnumNames("KernelModule", "KERNEL_MODULE_")
OUTCOMES = EnumNames("Outcome", "OUTCOME_")
PLAN_SOURCES = EnumNames("PlanSource", "PLAN_SOURCE_")
