"""Runs the egress probe inside a network namespace and prints the results as JSON.

Reads `{"config": <EgressConfig>, "servers": [{"host", "port", "cert", "key"}]}` on stdin,
starts those HTTPS servers in this process (so they live in the same namespace), probes
every target concurrently with the real system resolver of the namespace, prints a JSON
list of EgressResult dicts. Run as `python -m tests.support.netns_runner`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from dataclasses import asdict
from typing import Any

from agent.config import EgressConfig
from agent.probes.egress.probe import probe_targets
from tests.support.servers import Behaviour, start_server


async def run(spec: dict[str, Any]) -> list[dict[str, Any]]:
    servers = []
    for server in spec.get("servers", []):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(server["cert"], server["key"])
        servers.append(await start_server(Behaviour(), context, server["host"], server["port"]))
    config = EgressConfig.from_mapping(spec["config"])
    results = await probe_targets(config.targets, config)
    for running in servers:
        running.close()
    return [asdict(result) for result in results]


def main() -> None:
    spec = json.load(sys.stdin)
    json.dump(asyncio.run(run(spec)), sys.stdout)


if __name__ == "__main__":
    main()
