"""`preflight-agent`: probe this node and push reports to the collector (or print one, --once)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from agent.config import AgentConfig, ConfigError, load_config, resolve_node_name
from agent.fanout import FanoutClient
from agent.identity import check_files
from agent.plan import AgentPlan
from agent.report import to_json
from agent.runner import Agent, ProbeSet, agent_version, default_probes, run_cycle
from agent.snapshot import build_report
from agent.text import to_text

EXIT_CONFIG = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="preflight-agent", description="Probe this node against the Run:AI prerequisites."
    )
    parser.add_argument("--config", type=Path, help="agent YAML config (default: built-in)")
    parser.add_argument("--collector", metavar="HOST:PORT", help="collector gRPC address")
    parser.add_argument("--node-name", help="default: $NODE_NAME, then the hostname")
    parser.add_argument("--host-root", type=Path, help="where the host's / is (in a pod: /host)")
    parser.add_argument(
        "--profile",
        help="profile (shipped name or YAML file) probed before the collector sends a plan, "
        "and with --once (default: the config's `profile`, runai-2020)",
    )
    parser.add_argument("--once", action="store_true", help="probe once, print, exit 0")
    parser.add_argument("--format", choices=("json", "text"), default="text")
    parser.add_argument("--check-config", action="store_true", help="validate config and exit")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def effective_config(args: argparse.Namespace) -> AgentConfig:
    config = load_config(args.config)
    updates: dict[str, object] = {}
    if args.collector:
        updates["collector"] = config.collector.replace(address=args.collector)
    if args.host_root:
        updates["host_root"] = args.host_root
    if args.profile:
        updates["profile"] = args.profile
    return config.replace(**updates) if updates else config


async def run_once(
    config: AgentConfig, node_name: str, output_format: str, plan: AgentPlan | None = None
) -> None:
    probes = default_probes(config, node_name, plan)
    try:
        snapshot = await run_cycle(probes)
    finally:
        if probes.close is not None:
            await probes.close()
    report = build_report(
        snapshot,
        node_name=node_name,
        agent_version=agent_version(),
        instance_id="once",
        sequence=1,
        probe_interval=config.probe_interval,
        heartbeat_interval=config.heartbeat_interval,
    )
    print(to_json(report) if output_format == "json" else to_text(report))


async def run_forever(
    config: AgentConfig,
    node_name: str,
    probes: ProbeSet | None = None,
    plan: AgentPlan | None = None,
) -> None:
    """Probe and push until SIGTERM/SIGINT, following the collector's probe plan."""
    # Every address the collector name resolves to is a replica that gets every report.
    client = FanoutClient(
        config.collector.address,
        timeout=config.collector.timeout,
        max_backoff=config.collector.max_backoff,
        tls=config.collector.tls,
        token_file=config.collector.token_file,
        resolve_interval=config.collector.resolve_interval,
    )
    probes = probes or default_probes(config, node_name, plan)
    agent = Agent(config, node_name, probes, client.submit)
    client.on_ack = agent.adopt_ack
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    sender = asyncio.create_task(client.run())
    logging.getLogger(__name__).info(
        "agent %s for node %s pushing to %s", agent.instance_id, node_name, client.address
    )
    try:
        await agent.run()
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await client.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = effective_config(args)
        # The packaged profile's plan, loaded now: a bad --profile is a config error.
        plan = AgentPlan(config)
        if args.check_config:
            # The config alone: the TLS and token files live where it is deployed.
            print(f"preflight-agent: config OK ({args.config or 'built-in defaults'})")
            return 0
        if not args.once:
            check_files(config.collector, str(args.config or "built-in defaults"))
    except ConfigError as error:
        print(f"preflight-agent: config error:\n{error}", file=sys.stderr)
        return EXIT_CONFIG
    node_name = resolve_node_name(args.node_name, config)
    if args.once:
        asyncio.run(run_once(config, node_name, args.format, plan))
    else:
        asyncio.run(run_forever(config, node_name, plan=plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
