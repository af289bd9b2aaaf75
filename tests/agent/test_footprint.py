"""What the running agent loads: libraries only failures need stay out until a failure.

grpcio (~24 MiB) and pydantic (~9 MiB) are never loaded: the agent's gRPC client is
agent.wire on h2, its config and profiles are preflight.strict dataclasses.

dnspython and cryptography cost the agent about 15 and 16 MiB of resident memory; the
detail of a failed resolution (agent/probes/egress/dns_detail.py) and the parse of a
certificate that failed verification (agent/probes/tls_facts.py) use the standard library
instead, so neither loads, healthy node or failing (docs/performance.md, "Agent footprint").
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.procs import start, stop, wait_for, write_collector_config

LAZY = ("cryptography", "dns")


def loaded_after(code: str) -> list[str]:
    script = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps(sorted(m for m in {LAZY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    loaded: list[str] = json.loads(out.splitlines()[-1])
    return loaded


def test_starting_the_agent_loads_neither_dns_detail_nor_certificate_parsing() -> None:
    assert loaded_after("import agent.cli, agent.runner, agent.fanout, agent.kinds") == []


def test_parsing_an_unverified_certificate_loads_no_certificate_library() -> None:
    # An intercepting proxy's certificate is parsed by the stdlib's decoder, and the same
    # check sees cryptography load when it is asked for: the assertion is not vacuous.
    # The certificate is made here (trustme imports cryptography), the child only parses.
    import ssl

    import trustme

    pem = trustme.CA().issue_cert("x.test").cert_chain_pems[0].bytes()
    der = ssl.PEM_cert_to_DER_cert(pem.decode()).hex()
    code = (
        "from agent.probes.tls_facts import certificate_from_der\n"
        f"der = bytes.fromhex({der!r})\n"
        "assert certificate_from_der(der, verified=False).issuer\n"
    )
    assert loaded_after(code) == []
    explicit = code + "certificate_from_der(der, verified=False, use_cryptography=True)\n"
    assert loaded_after(explicit) == ["cryptography"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_live_agent_that_reported_has_neither_grpcio_nor_pydantic_mapped(
    tmp_path: Path,
) -> None:
    """The agent speaks agent.wire (h2) and strict dataclasses; the collector keeps grpcio."""
    grpc_port, http_port = _free_port(), _free_port()
    config = write_collector_config(
        tmp_path / "collector.yaml", f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}", 5
    )
    collector = start("preflight-collector", "--config", str(config), log=tmp_path / "c.log")
    agent_config = tmp_path / "agent.yaml"
    agent_config.write_text("egress:\n  timeout: 1s\n")
    agent = None
    try:
        agent = start(
            "preflight-agent",
            "--config", str(agent_config),
            "--collector", f"127.0.0.1:{grpc_port}",
            "--node-name", "footprint-node",
            log=tmp_path / "a.log",
        )  # fmt: skip

        def reported() -> bool:
            url = f"http://127.0.0.1:{http_port}/api/v1/nodes"
            with urllib.request.urlopen(url, timeout=2) as response:
                return "footprint-node" in response.read().decode()

        wait_for(reported, 60, "the agent's first report reaches the collector")
        agent_maps = Path(f"/proc/{agent.pid}/maps").read_text()
        collector_maps = Path(f"/proc/{collector.pid}/maps").read_text()
    finally:
        if agent is not None:
            stop(agent)
        stop(collector)
    # grpcio is a C extension (cygrpc), pydantic too (pydantic_core): mapped when loaded.
    assert "cygrpc" in collector_maps  # the check can see it
    assert "cygrpc" not in agent_maps
    assert "pydantic_core" not in agent_maps


def test_starting_the_agent_imports_neither_grpc_nor_pydantic() -> None:
    script = (
        "import sys, agent.cli, agent.runner, agent.fanout, agent.kinds, agent.plan\n"
        "from agent.config import load_config\n"
        "agent.plan.AgentPlan(load_config(None))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'grpc', 'pydantic', 'h2'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.strip() == "['h2']"


def test_agent_version_without_importlib_metadata_is_the_installed_one() -> None:
    script = (
        "import sys\n"
        "from agent.runner import agent_version\n"
        "mine = agent_version()\n"
        "loaded = 'importlib.metadata' in sys.modules\n"
        "from importlib import metadata\n"
        "print(mine, metadata.version('runai-preflight'), loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert out[0] == out[1] != "0.0.0+unknown"
    assert out[2] == "False"
