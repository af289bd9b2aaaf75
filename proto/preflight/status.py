"""`preflight status`: a running collector's verdicts as the same table, for a CI/CD gate.

Reads `/api/v1/verdicts` (read-only, no credentials) and ends in the same `Outcome` as
`preflight check`, so the table, the JSON and the exit codes are identical. With
`--wait DURATION` it polls until the cluster is ready (nothing fails or is unknown:
exit 0 or 1) or the time is up, then reports the last answer; a collector that never
answered is exit 3 with the reason.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from preflight.table import STATUSES, Outcome, Row

DEFAULT_COLLECTOR = "http://127.0.0.1:9750"
POLL_SECONDS = 2.0
REQUEST_TIMEOUT = 10.0
# A verdicts document is a few kilobytes per requirement; more is not a collector.
MAX_BYTES = 8 * 1024 * 1024


class Unavailable(Exception):
    """The collector could not be asked, or its answer is not a verdicts document."""


def verdicts_url(collector: str) -> str:
    base = collector.rstrip("/")
    if "://" not in base:
        base = f"http://{base}"
    return f"{base}/api/v1/verdicts"


def fetch(collector: str, timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
    url = verdicts_url(collector)
    # The collector is in-cluster or local: never through an egress proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise Unavailable(f"{url} answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Unavailable(f"collector unreachable at {url}: {reason}") from None
    if len(body) > MAX_BYTES:
        raise Unavailable(f"{url} answered more than {MAX_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError:
        raise Unavailable(f"{url} did not answer JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("verdicts"), list):
        raise Unavailable(f"{url} answered JSON without a verdicts list")
    return data


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def outcome_from(data: dict[str, Any], collector: str) -> Outcome:
    """The collector's document as an Outcome; unreadable entries read as unknown."""
    rows = []
    for item in data["verdicts"]:
        if not isinstance(item, dict):
            continue
        status = str(item.get("status", "unknown"))
        rows.append(
            Row(
                requirement=str(item.get("requirement", "?")),
                status=status if status in STATUSES else "unknown",
                reason=str(item.get("reason", "")),
                nodes=_strings(item.get("nodes")),
                targets=_strings(item.get("targets")),
            )
        )
    kube = data.get("kubernetes") if isinstance(data.get("kubernetes"), dict) else {}
    ready = data.get("ready") if isinstance(data.get("ready"), dict) else {}
    generated = data.get("generated_at")
    return Outcome(
        command="status",
        profile=str(data.get("profile", "")),
        generated_at=float(generated) if isinstance(generated, int | float) else time.time(),
        rows=rows,
        source={"collector": collector},
        kubernetes=dict(kube or {}),
        ready={str(k): bool(v) for k, v in (ready or {}).items()},
    )


def unavailable_outcome(collector: str, reason: str) -> Outcome:
    return Outcome(
        command="status",
        profile="",
        generated_at=time.time(),
        rows=[Row("collector", "unknown", reason)],
        source={"collector": collector},
        kubernetes={},
    )


def poll(
    collector: str,
    wait: float | None,
    *,
    interval: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_wait: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """One answer, or with `wait` the first ready one (exit ≤ 1) within `wait` seconds."""
    deadline = clock() + (wait or 0.0)
    while True:
        try:
            outcome = outcome_from(fetch(collector), collector)
        except Unavailable as error:
            outcome = unavailable_outcome(collector, str(error))
        if wait is None or outcome.exit_code <= 1 or clock() >= deadline:
            if wait is not None and outcome.exit_code > 1:
                outcome.notes.append(f"not ready within {wait:g}s (--wait)")
            return outcome
        if on_wait is not None:
            on_wait(outcome)
        sleep(min(interval, max(deadline - clock(), 0.0)))
