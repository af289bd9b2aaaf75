"""How a Kubernetes API error reads in a reason: one line, bounded, the API's own message."""

from __future__ import annotations

import json
from collections.abc import Mapping

from kubernetes.client.exceptions import ApiException

MAX_DETAIL = 300


def one_line(text: str, limit: int = MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_message(e: ApiException, limit: int = MAX_DETAIL) -> str:
    """The `message` of the Status object the API server answered with, else its body."""
    body = e.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return one_line(body, limit)
        if isinstance(status, Mapping) and isinstance(status.get("message"), str):
            return one_line(status["message"], limit)
        return one_line(body, limit)
    return one_line(str(e.reason or ""), limit)
