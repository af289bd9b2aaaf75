"""Clock facts of the node: the kernel's NTP state, as adjtimex(2) reports it.

`adjtimex` with `modes = 0` only reads (no CAP_SYS_TIME needed, works in a container:
the clock is the host's). The kernel knows what the NTP daemon (chronyd, ntpd,
systemd-timesyncd) told it: STA_UNSYNC cleared and a clock state other than TIME_ERROR
mean "synchronised"; `esterror` and `maxerror` are its estimated and maximum error in
microseconds. The clock offset against the collector is measured on the collector side
(the report's timestamp), not here.

`parse_timex` is pure (status word, state, errors in; facts out) so tests can feed it
any kernel answer; `read_clock` makes the one syscall and never raises.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ClockFacts", "Timex", "parse_timex", "read_clock"]

STA_UNSYNC = 0x0040  # include/uapi/linux/timex.h: the clock is not synchronised
TIME_ERROR = 5  # adjtimex's return value when the clock is not synchronised
_STATES = {0: "ok", 1: "ins", 2: "del", 3: "oop", 4: "wait", 5: "error"}


class Timex(ctypes.Structure):
    """struct timex of <sys/timex.h> (glibc, LP64 and ILP32 alike: C longs and ints)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@dataclass(frozen=True)
class ClockFacts:
    available: bool  # False: the call failed (error says why); nothing else is meaningful
    synchronised: bool = False
    state: str = ""  # "ok", "ins", "del", "oop", "wait", "error"
    estimated_error_seconds: float = 0.0
    maximum_error_seconds: float = 0.0
    error: str = ""


def parse_timex(state: int, status: int, esterror_us: int, maxerror_us: int) -> ClockFacts:
    """The facts of one adjtimex answer (its return value and the struct's fields)."""
    if state < 0:
        return ClockFacts(available=False, error=f"adjtimex failed (returned {state})")
    synchronised = not (status & STA_UNSYNC) and state != TIME_ERROR
    return ClockFacts(
        available=True,
        synchronised=synchronised,
        state=_STATES.get(state, str(state)),
        estimated_error_seconds=max(esterror_us, 0) / 1e6,
        maximum_error_seconds=max(maxerror_us, 0) / 1e6,
    )


AdjTimex = Callable[[Timex], int]


def _libc_adjtimex() -> AdjTimex | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        function = libc.adjtimex
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.POINTER(Timex)]
    function.restype = ctypes.c_int

    def call(timex: Timex) -> int:
        return int(function(ctypes.byref(timex)))

    return call


def read_clock(adjtimex: AdjTimex | None = None) -> ClockFacts:
    """The kernel's NTP state now; a failed call is a fact (available=False), never raised."""
    call = adjtimex if adjtimex is not None else _libc_adjtimex()
    if call is None:
        return ClockFacts(available=False, error="adjtimex is not available (no C library)")
    timex = Timex()
    timex.modes = 0  # read only
    try:
        state = call(timex)
    except OSError as e:
        return ClockFacts(available=False, error=f"adjtimex failed: {e}")
    if state < 0:
        errno = ctypes.get_errno()
        return ClockFacts(available=False, error=f"adjtimex failed (errno {errno})")
    return parse_timex(state, timex.status, timex.esterror, timex.maxerror)
