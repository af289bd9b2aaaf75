"""Strict configs: a wrong key names the key and the file, and both commands exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import load_config as load_agent_config
from agent.plan import AgentPlan
from collector.config import load_config as load_collector_config

BIN = Path(sys.executable).parent


def run(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / command), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("command", "text", "key"),
    [
        ("preflight-agent", "egress:\n  timeoutt: 3s\n", "egress.timeoutt"),
        ("preflight-agent", "probe_interval: 15 seconds\n", "probe_interval"),
        (
            "preflight-agent",
            "mounts:\n  volumes:\n    - path: /data\n      writable: true\n",
            "mounts.volumes.0.writable",
        ),
        (
            "preflight-agent",
            "egress:\n  targets:\n    - name: x\n      host: h\n      path: nope\n",
            "egress.targets.0.path",
        ),
        ("preflight-collector", "listen:\n  grcp: 0.0.0.0:1\n", "listen.grcp"),
        ("preflight-collector", "heartbeat_interval: -3s\n", "heartbeat_interval"),
        ("preflight-collector", "profile: no-such-profile\n", "no-such-profile"),
        ("preflight-collector", "auth:\n  mode: token-file\n", "auth"),
        ("preflight-collector", "auth:\n  mode: password\n", "auth.mode"),
        ("preflight-collector", "tls:\n  cert_file: /nonexistent.crt\n", "tls"),
    ],
)
def test_bad_config_names_key_and_file_and_exits_2(
    tmp_path: Path, command: str, text: str, key: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = run(command, "--config", str(config), "--check-config")
    assert result.returncode == 2, result.stderr
    assert str(config) in result.stderr or "no-such-profile" in result.stderr
    assert key in result.stderr


@pytest.mark.parametrize(
    ("command", "text", "key"),
    [
        (
            "preflight-collector",
            "tls:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
            "tls.cert_file",
        ),
        (
            "preflight-collector",
            "auth:\n  mode: token-file\n  token_file: /nonexistent/token\n",
            "auth.token_file",
        ),
        (
            "preflight-agent",
            "collector:\n  tls:\n    ca_file: /nonexistent.pem\n",
            "collector.tls.ca_file",
        ),
        (
            "preflight-agent",
            "collector:\n  token_file: /nonexistent/token\n",
            "collector.token_file",
        ),
    ],
)
def test_unreadable_tls_or_token_file_exits_2_at_start(
    tmp_path: Path, command: str, text: str, key: str
) -> None:
    """--check-config checks the config alone (it runs where the files are not, e.g. CI);
    starting for real with a file missing exits 2 naming the key and the config file."""
    config = tmp_path / "files.yaml"
    config.write_text(text + ("listen:\n  grpc: 127.0.0.1:0\n  http: 127.0.0.1:0\n"
                              if command == "preflight-collector" else ""))  # fmt: skip
    assert run(command, "--config", str(config), "--check-config").returncode == 0
    result = run(command, "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert key in result.stderr and str(config) in result.stderr


@pytest.mark.parametrize("command", ["preflight-agent", "preflight-collector"])
def test_unparsable_and_missing_files_exit_2(tmp_path: Path, command: str) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [unclosed\n")
    result = run(command, "--config", str(broken), "--check-config")
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    result = run(command, "--config", str(tmp_path / "absent.yaml"), "--check-config")
    assert result.returncode == 2 and "absent.yaml" in result.stderr


@pytest.mark.parametrize("command", ["preflight-agent", "preflight-collector"])
def test_good_config_checks_ok(tmp_path: Path, command: str) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text("heartbeat_interval: 1m30s\n")
    result = run(command, "--config", str(config), "--check-config")
    assert result.returncode == 0, result.stderr


def test_durations_and_defaults() -> None:
    agent = load_agent_config(None)
    assert agent.probe_interval == 15.0 and agent.heartbeat_interval == 30.0
    # No local targets: the agent probes its plan, by default the runai-2020 profile's.
    assert agent.egress.targets == () and agent.profile == "runai-2020"
    assert [t.name for t in AgentPlan(agent).current.targets] == [
        "runai-charts.storage.googleapis.com",
        "hub.docker.com",
        "gcr.io/run-ai-prod",
        "quay.io",
        "prometheus-us-central1.grafana.net",
        "app.run.ai",
    ]
    collector = load_collector_config(None)
    assert collector.listen.grpc.endswith(":9751") and collector.listen.http.endswith(":9750")


def test_node_name_comes_from_flag_then_config_then_env_then_hostname(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from agent.config import AgentConfig, resolve_node_name

    monkeypatch.setenv("NODE_NAME", "from-env")
    assert resolve_node_name("from-flag", AgentConfig(node_name="from-config")) == "from-flag"
    assert resolve_node_name(None, AgentConfig(node_name="from-config")) == "from-config"
    assert resolve_node_name(None, AgentConfig()) == "from-env"
    monkeypatch.delenv("NODE_NAME")
    assert resolve_node_name(None, AgentConfig()) == socket.gethostname()
