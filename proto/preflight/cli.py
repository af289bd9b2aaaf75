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
from preflight.configfile import ConfigError

EXIT_CONFIG = 2


def profiles(name: str | None) -> int:
    """`preflight profiles [NAME]`: the shipped profiles, or one profile's settings.

    rich is imported here only (DESIGN §5); it drops colour for pipes and NO_COLOR.
    """
    from rich.console import Console
    from rich.table import Table

    from preflight.profile import load_profile
    from preflight.profile_table import rows, shipped

    console = Console()
    if name is None:
        table = Table(title="Shipped requirement profiles")
        for column in ("profile", "description", "Kubernetes", "OpenShift", "requirements"):
            table.add_column(column)
        for profile in shipped():
            settings = dict(rows(profile))
            default = " (default)" if profile.name == CollectorConfig().profile else ""
            table.add_row(
                profile.name + default,
                settings["description"],
                settings["Kubernetes"],
                settings["OpenShift"],
                str(len(profile.requirement_phases())),
            )
        console.print(table)
        return 0
    try:
        profile = load_profile(name)
    except ConfigError as error:
        print(f"preflight profiles: {error}", file=sys.stderr)
        return EXIT_CONFIG
    table = Table(title=f"Profile {profile.name}")
    table.add_column("setting")
    table.add_column("value")
    for setting, value in rows(profile):
        table.add_row(setting.strip("`"), value)
    console.print(table)
    targets = Table(title="Egress targets")
    for column in ("target", "host:port", "path", "phase", "expect"):
        targets.add_column(column)
    for t in profile.egress.targets:
        expect = ", ".join(str(s) for s in t.expect_status) or "any HTTP response"
        targets.add_row(t.name, f"{t.host}:{t.port}", t.path, t.phase, expect)
    console.print(targets)
    return 0


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
    endpoint = agent_config.collector.replace(address=f"127.0.0.1:{collector.grpc_port}")
    try:
        await run_forever(agent_config.replace(collector=endpoint), node_name, probes)
    finally:
        await collector.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="preflight", description="Preflight umbrella command.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_demo = sub.add_parser("demo", help="collector + one local agent on loopback")
    run_demo.add_argument("--http-port", type=int, default=9750)
    run_demo.add_argument("--grpc-port", type=int, default=9751)
    run_demo.add_argument("--node-name", default=socket.gethostname())
    show = sub.add_parser("profiles", help="the shipped requirement profiles, or one of them")
    show.add_argument("name", nargs="?", help="a shipped profile name or a profile file")
    from preflight import commands

    commands.register(sub)
    args = parser.parse_args(argv)
    if args.command == "profiles":
        return profiles(args.name)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command != "demo":
        return commands.run(args)
    asyncio.run(demo(args.http_port, args.grpc_port, args.node_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
