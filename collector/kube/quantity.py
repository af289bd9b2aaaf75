"""Kubernetes resource quantities as the API writes them ("3500m", "16Gi", "8e9").

The apimachinery grammar, parsed exactly (Decimal), rounded up where Kubernetes needs an
integer. Bad input raises ValueError naming the text; callers turn it into a reason.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["parse_count", "parse_cpu", "parse_memory", "parse_quantity"]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
# The apimachinery grammar: signed number, then a binary SI suffix, a decimal exponent, or
# a decimal SI suffix. The exponent alternative comes before "E" so "1E3" is 1000, "1E" exa.
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exponent>[+-]?[0-9]{1,4})|(?P<decimal>[numkMGTPE]?))"
)
# Anything beyond this is no real node's resource; refusing it keeps int() conversions cheap.
_MAX_MAGNITUDE = Decimal("1e30")


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity ("4", "3500m", "16Gi", "8e9", "1.5k") as a Decimal.

    Raises ValueError naming the text when it is not a quantity.
    """
    if not isinstance(text, str):
        raise ValueError(f"quantity must be a string, got {type(text).__name__}")
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    try:
        number = Decimal(match["number"])
    except InvalidOperation as e:  # pragma: no cover - the regex admits only valid numbers
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from e
    if match["binary"] is not None:
        value = number * _BINARY[match["binary"]]
    elif match["exponent"] is not None:
        exponent = int(match["exponent"])
        if abs(exponent) > 30:
            raise ValueError(f"quantity out of range: {text!r}")
        value = number.scaleb(exponent)
    else:
        value = number * _DECIMAL[match["decimal"] or ""]
    if abs(value) > _MAX_MAGNITUDE:
        raise ValueError(f"quantity out of range: {text!r}")
    return value


def _ceil_int(value: Decimal) -> int:
    # Kubernetes rounds fractional quantities up when it needs an integer (Quantity.Value()).
    integral = int(value)
    return integral + 1 if value > integral else integral


def parse_cpu(text: str) -> float:
    """CPU quantity in cores: "4" → 4.0, "3500m" → 3.5."""
    return float(parse_quantity(text))


def parse_memory(text: str) -> int:
    """Memory quantity in bytes: "16Gi", "16384Ki", "8e9", "8G", "17179869184"."""
    return _ceil_int(parse_quantity(text))


def parse_count(text: str) -> int:
    """An integer resource such as nvidia.com/gpu: "8" → 8."""
    return _ceil_int(parse_quantity(text))
