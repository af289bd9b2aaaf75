"""`preflight`: the umbrella command. `preflight demo` runs a collector and one agent locally.

This module is the composition root: the only code that imports both the agent
and the collector (they never import each other).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys

from agent.cli import run_forever
from agent.config import load_config as load_agent_config
from agent.runner import default_probes
from collector.config import CollectorConfig, ListenConfig
from collector.service import CollectorService


async def demo(http_port: int, grpc_port: int, node_name: str) -> None:
    agent_config = load_agent_config(None)
    # Built before the collector starts, so a broken probe setup fails before any port opens.
    probes = default_probes(agent_config, node_name)
    collector = CollectorService(
        CollectorConfig(
            listen=ListenConfig(grpc=f"127.0.0.1:{grpc_port}", http=f"127.0.0.1:{http_port}")
        )
    )
    await collector.start()
    base = f"http://127.0.0.1:{collector.http_port}"
    print(
        f"""Preflight demo: collector plus one agent (node "{node_name}"), profile runai-2020.
  status page   {base}/
  metrics       {base}/metrics
  verdicts      {base}/api/v1/verdicts
  nodes         {base}/api/v1/nodes
  this node     {base}/api/v1/nodes/{node_name}
  gRPC ingest   127.0.0.1:{collector.grpc_port}
The first probe cycle takes up to the egress timeout (10s). Ctrl-C stops.""",
        flush=True,
    )
    endpoint = agent_config.collector.model_copy(
        update={"address": f"127.0.0.1:{collector.grpc_port}"}
    )
    try:
        await run_forever(
            agent_config.model_copy(update={"collector": endpoint}), node_name, probes
        )
    finally:
        await collector.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="preflight", description="Preflight umbrella command.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_demo = sub.add_parser("demo", help="collector + one local agent on loopback")
    run_demo.add_argument("--http-port", type=int, default=9750)
    run_demo.add_argument("--grpc-port", type=int, default=9751)
    run_demo.add_argument("--node-name", default=socket.gethostname())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(demo(args.http_port, args.grpc_port, args.node_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
