"""What the running agent loads: libraries only failures need stay out until a failure.

dnspython (the detail of a failed resolution) and cryptography (parsing a certificate
that failed verification) cost the agent about 15 and 16 MiB of resident memory; a
healthy node needs neither (docs/performance.md, "Agent footprint").
"""

from __future__ import annotations

import json
import subprocess
import sys

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


def test_parsing_an_unverified_certificate_loads_cryptography() -> None:
    # The same check can see it load: the assertion above is not vacuous.
    code = (
        "import trustme\n"
        "from agent.probes.tls_facts import certificate_from_der\n"
        "ca = trustme.CA()\n"
        "pem = ca.issue_cert('x.test').cert_chain_pems[0].bytes()\n"
        "import ssl\n"
        "certificate_from_der(ssl.PEM_cert_to_DER_cert(pem.decode()), verified=False)\n"
    )
    assert loaded_after(code) == ["cryptography"]
