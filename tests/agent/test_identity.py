"""The agent's side of identity: the token file read before every call, TLS settings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.config import CollectorTls, load_config
from agent.identity import (
    MAX_TOKEN_BYTES,
    call_metadata,
    client_ssl_context,
    read_token,
    verification_name,
)


def test_token_is_read_fresh_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("eyJhbGciOi.first.sig\n")
    assert call_metadata(path) == (("authorization", "Bearer eyJhbGciOi.first.sig"),)
    path.write_text("eyJhbGciOi.second.sig")  # the kubelet rotated it
    assert call_metadata(path) == (("authorization", "Bearer eyJhbGciOi.second.sig"),)


def test_no_token_file_configured_sends_nothing() -> None:
    assert call_metadata(None) is None


@pytest.mark.parametrize("content", [None, b"", b"  \n", b"x" * (MAX_TOKEN_BYTES + 1)])
def test_missing_empty_or_huge_token_sends_nothing_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes | None
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="agent.identity"):
        assert read_token(path) is None
    assert str(path) in caplog.text
    assert "x" * 20 not in caplog.text  # what the file holds is never logged


def test_tls_settings_from_yaml(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        "collector:\n  tls:\n    ca_file: /etc/ca.crt\n    server_name: collector.svc\n"
        "  token_file: /var/run/secrets/preflight/token\n"
    )
    endpoint = load_config(config).collector
    assert endpoint.tls.enabled and endpoint.tls.ca_file == Path("/etc/ca.crt")
    assert verification_name(endpoint.tls) == "collector.svc"
    assert not CollectorTls().enabled
    assert verification_name(CollectorTls()) is None
    assert client_ssl_context(CollectorTls()) is None  # plaintext
