"""Kubernetes quantity parsing (collector.kube.quantity.parse_*): table, oracle and bad input."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from kubernetes.utils import parse_quantity as _client_parse_quantity

from collector.kube.adapter import KubeSource
from collector.kube.quantity import parse_count, parse_cpu, parse_memory, parse_quantity
from collector.kube.watcher import KubeWatcher

# The official client's parser is the oracle where both accept the text (it is untyped).
client_parse_quantity: Callable[[str], Decimal] = _client_parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4", Decimal(4)),
        ("3500m", Decimal("3.5")),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("+2", Decimal(2)),
        ("-1", Decimal(-1)),
        ("100n", Decimal("1e-7")),
        ("250u", Decimal("0.00025")),
        ("1k", Decimal(1000)),
        ("16Gi", Decimal(16 * 2**30)),
        ("16384Ki", Decimal(16 * 2**20)),
        ("1Mi", Decimal(2**20)),
        ("2Ti", Decimal(2 * 2**40)),
        ("1Pi", Decimal(2**50)),
        ("1Ei", Decimal(2**60)),
        ("8e9", Decimal(8 * 10**9)),
        ("8E9", Decimal(8 * 10**9)),
        ("12e-3", Decimal("0.012")),
        ("1E", Decimal(10**18)),  # exa, not an exponent without digits
        ("8G", Decimal(8 * 10**9)),
        ("1M", Decimal(10**6)),
        ("1T", Decimal(10**12)),
        ("1P", Decimal(10**15)),
        ("17179869184", Decimal(17179869184)),
        (" 2 ", Decimal(2)),
    ],
)
def test_quantities(text: str, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Gi",
        "four",
        "1KiB",
        "1ki",
        "1K",
        "1e",
        "1.2.3",
        "1 Gi",
        "--1",
        "0x10",
        "1e99999",
        "1e31",
    ],
)
def test_bad_quantities_raise_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_quantity(text)
    assert repr(text) in str(info.value)


def test_non_string_quantity_raises() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_quantity(4)  # type: ignore[arg-type]


def test_typed_helpers() -> None:
    assert parse_cpu("3500m") == 3.5
    assert parse_cpu("64") == 64.0
    assert parse_memory("16Gi") == 16 * 2**30
    assert parse_memory("8167548Ki") == 8167548 * 1024
    assert parse_memory("8e9") == 8_000_000_000
    assert parse_memory("1500m") == 2  # rounded up, as Quantity.Value() does
    assert parse_count("8") == 8
    assert parse_count("0") == 0


numbers = st.one_of(
    st.integers(min_value=0, max_value=10**12).map(str),
    st.builds(
        lambda whole, frac: f"{whole}.{frac}",
        st.integers(min_value=0, max_value=10**6),
        st.integers(min_value=0, max_value=10**6),
    ),
)
suffixes = st.sampled_from(
    ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
    + [f"e{e}" for e in range(-9, 19)]
)


@given(sign=st.sampled_from(["", "+", "-"]), number=numbers, suffix=suffixes)
@example(sign="", number="867361737989", suffix="Ei")  # past the cap: refused
def test_agrees_with_the_official_client(sign: str, number: str, suffix: str) -> None:
    text = f"{sign}{number}{suffix}"
    expected = client_parse_quantity(text)
    if abs(expected) > Decimal("1e30"):
        # Beyond any real node's resources our parser refuses on purpose (cheap int()s).
        with pytest.raises(ValueError, match="out of range"):
            parse_quantity(text)
    else:
        assert parse_quantity(text) == expected


@given(st.integers(min_value=0, max_value=2**50))
def test_memory_in_ki_round_trips(kib: int) -> None:
    assert parse_memory(f"{kib}Ki") == kib * 1024


@given(st.integers(min_value=0, max_value=10**7))
def test_millicores(millis: int) -> None:
    assert parse_cpu(f"{millis}m") == pytest.approx(millis / 1000)


def test_backoff_grows_is_capped_and_jittered() -> None:
    watcher = KubeWatcher(
        KubeSource("none"),
        refresh_interval=30,
        backoff_initial=1.0,
        backoff_max=60.0,
        rng=random.Random(7),
    )
    assert watcher.next_delay() == 30  # no error: the plain refresh interval
    delays = []
    for errors in range(1, 12):
        watcher.consecutive_errors = errors
        nominal = min(60.0, 2.0 ** (errors - 1))
        delay = watcher.next_delay()
        assert nominal / 2 <= delay <= nominal
        delays.append(delay)
    assert max(delays) <= 60.0
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    watcher.consecutive_errors = 10_000
    assert 30.0 <= watcher.next_delay() <= 60.0


def test_backoff_cap_defaults_to_at_least_the_refresh_interval() -> None:
    assert KubeWatcher(KubeSource("none"), refresh_interval=30).backoff_max == 60.0
    assert KubeWatcher(KubeSource("none"), refresh_interval=300).backoff_max == 300.0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        KubeSource("cloud")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="request_timeout"):
        KubeSource(request_timeout=0)
    with pytest.raises(ValueError, match="refresh_interval"):
        KubeWatcher(KubeSource("none"), refresh_interval=0)
