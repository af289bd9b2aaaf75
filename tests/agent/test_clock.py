"""agent.probes.clock: the kernel's NTP state from adjtimex(2)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.probes.clock import STA_UNSYNC, ClockFacts, Timex, parse_timex, read_clock

STA_PLL, STA_NANO = 0x0001, 0x2000


@pytest.mark.parametrize(
    ("state", "status", "synchronised", "name"),
    [
        (0, STA_PLL | STA_NANO, True, "ok"),  # chronyd disciplining the clock
        (1, STA_PLL, True, "ins"),  # a leap second will be inserted: still synchronised
        (0, STA_PLL | STA_UNSYNC, False, "ok"),  # the daemon gave up: STA_UNSYNC set
        (5, STA_UNSYNC, False, "error"),  # no daemon since boot (the kernel's default)
        (5, STA_PLL, False, "error"),  # TIME_ERROR alone also means not synchronised
    ],
)
def test_parse_timex(state: int, status: int, synchronised: bool, name: str) -> None:
    facts = parse_timex(state, status, esterror_us=1_250, maxerror_us=32_000)
    assert facts == ClockFacts(
        available=True,
        synchronised=synchronised,
        state=name,
        estimated_error_seconds=0.00125,
        maximum_error_seconds=0.032,
    )


def test_a_failed_call_is_a_fact() -> None:
    assert parse_timex(-1, 0, 0, 0).available is False
    facts = read_clock(lambda timex: -1)
    assert facts.available is False and "adjtimex failed" in facts.error

    def broken(timex: Timex) -> int:
        raise PermissionError(1, "Operation not permitted")

    assert "Operation not permitted" in read_clock(broken).error


def test_read_clock_only_reads_and_takes_the_struct_fields() -> None:
    seen: list[int] = []

    def kernel(timex: Timex) -> int:
        seen.append(timex.modes)
        timex.status = STA_PLL | STA_NANO
        timex.esterror = 250
        timex.maxerror = 8_000
        return 0

    facts = read_clock(kernel)
    assert seen == [0]  # modes 0: nothing is set, no CAP_SYS_TIME needed
    assert facts.synchronised and facts.estimated_error_seconds == 0.00025
    assert facts.maximum_error_seconds == 0.008


C_PROGRAM = r"""
#include <stdio.h>
#include <sys/timex.h>
int main(void) {
    struct timex t = {0};
    int state = adjtimex(&t);
    printf("%zu %d %d\n", sizeof(struct timex), state, (t.status & STA_UNSYNC) != 0);
    return 0;
}
"""


def test_the_real_kernel_agrees_with_a_c_program(tmp_path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to cross-check struct timex")
    source = tmp_path / "timex.c"
    source.write_text(C_PROGRAM)
    binary = tmp_path / "timex"
    subprocess.run([compiler, "-o", str(binary), str(source)], check=True, timeout=60)
    size, state, unsync = (
        int(v)
        for v in subprocess.run([binary], capture_output=True, text=True, check=True).stdout.split()
    )
    assert ctypes.sizeof(Timex) == size
    facts = read_clock()
    assert facts.available, facts.error
    assert facts.synchronised == (not unsync and state != 5)
    assert facts.maximum_error_seconds >= 0
