"""`preflight status`: a running collector's verdicts as the same table, for a CI/CD gate.

Reads `/api/v1/verdicts` (read-only; no credentials unless the collector sits behind an
HTTPS proxy that asks for them: `--ca-file`, `--token-file`) and ends in the same `Outcome` as
`preflight check`, so the table, the JSON and the exit codes are identical. With
`--wait DURATION` it polls until the cluster is ready (nothing fails or is unknown:
exit 0 or 1) or the time is up, then reports the last answer; a collector that never
answered is exit 3 with the reason.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from preflight.net import is_loopback
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


@dataclass(frozen=True)
class Access:
    """How to reach a collector behind an HTTPS proxy: a private CA, a bearer token."""

    ca_file: Path | None = None
    token_file: Path | None = None


def _request(url: str, access: Access) -> urllib.request.Request:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if access.token_file is not None:
        parts = urlsplit(url)
        # A bearer token over plain HTTP beyond this machine is a token given away.
        if parts.scheme != "https" and not is_loopback(parts.hostname or ""):
            raise Unavailable(
                f"refusing to send the token of --token-file over plain HTTP to {url}"
            )
        try:
            token = access.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise Unavailable(f"cannot read --token-file {access.token_file}: {error}") from None
        if not token:
            raise Unavailable(f"--token-file {access.token_file} is empty")
        request.add_header("Authorization", f"Bearer {token}")
    return request


def _opener(access: Access) -> urllib.request.OpenerDirector:
    # The collector is in-cluster or local: never through an egress proxy.
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if access.ca_file is not None:
        try:
            context = ssl.create_default_context(cafile=str(access.ca_file))
        except (OSError, ssl.SSLError) as error:
            raise Unavailable(f"cannot read --ca-file {access.ca_file}: {error}") from None
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def fetch(
    collector: str, timeout: float = REQUEST_TIMEOUT, access: Access | None = None
) -> dict[str, Any]:
    url = verdicts_url(collector)
    access = access or Access()
    request = _request(url, access)
    opener = _opener(access)
    try:
        with opener.open(request, timeout=timeout) as response:
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
    access: Access | None = None,
) -> Outcome:
    """One answer, or with `wait` the first ready one (exit ≤ 1) within `wait` seconds."""
    deadline = clock() + (wait or 0.0)
    while True:
        try:
            outcome = outcome_from(fetch(collector, access=access), collector)
        except Unavailable as error:
            outcome = unavailable_outcome(collector, str(error))
        if wait is None or outcome.exit_code <= 1 or clock() >= deadline:
            if wait is not None and outcome.exit_code > 1:
                outcome.notes.append(f"not ready within {wait:g}s (--wait)")
            return outcome
        if on_wait is not None:
            on_wait(outcome)
        sleep(min(interval, max(deadline - clock(), 0.0)))
