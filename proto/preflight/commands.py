"""The `preflight check` and `preflight status` subcommands: arguments, output, exit codes.

Registered by preflight.cli; the work is in preflight.check and preflight.status, the
rendering in preflight.table. Bad usage and bad config exit 3 here (the monitoring-plugin
convention DESIGN.md §4 settles for these two commands), never argparse's 2, which
would read as "something fails".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, NoReturn

from preflight.configfile import ConfigError, parse_duration
from preflight.table import EXIT_USAGE, Outcome, console_for, render_table, table_text, to_json


def _usage_exits_3(parser: argparse.ArgumentParser) -> None:
    def error(message: str) -> NoReturn:
        parser.print_usage(sys.stderr)
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {message}\n")

    setattr(parser, "error", error)  # noqa: B010 — replaces the bound method on this instance


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(sub: Any) -> None:
    check = sub.add_parser(
        "check",
        help="one-shot pre-install diagnosis of this machine",
        description="Probe this machine once and judge it with the collector's rules.",
    )
    check.add_argument("--profile", default="runai-2020", help="profile name or YAML file")
    check.add_argument("--kubeconfig", type=Path, help="default: KUBECONFIG, ~/.kube/config")
    check.add_argument("--format", choices=("table", "json"), default="table")
    check.add_argument("--output", type=Path, help="also write the result to FILE")
    check.add_argument("--config", type=Path, help="agent YAML config (proxy, CA, deadlines)")
    check.add_argument("--node-name", help="default: $NODE_NAME, then the hostname")
    check.add_argument("--host-root", type=Path, help="where the host's / is (default /)")
    check.add_argument(
        "--cluster-domain",
        default="",
        help="the Run:ai cluster domain to probe and judge (profiles with cluster_domain_tls)",
    )
    check.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="TARGET=HOST[:PORT]",
        help="probe a profile target at an internal mirror, as the collector's `mirrors` does",
    )
    check.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    _usage_exits_3(check)
    status = sub.add_parser(
        "status",
        help="a running collector's verdicts (a CI/CD gate)",
        description="Read a collector's verdicts and exit 0/1/2/3 like `preflight check`.",
    )
    status.add_argument("--collector", default=None, help="collector URL (default: the demo's)")
    status.add_argument("--format", choices=("table", "json"), default="table")
    status.add_argument("--output", type=Path, help="also write the result to FILE")
    status.add_argument(
        "--wait", type=_duration, metavar="DURATION", help="poll until ready, e.g. 5m"
    )
    status.add_argument(
        "--ca-file", type=Path, help="CA bundle for an https:// collector URL (a private CA)"
    )
    status.add_argument(
        "--token-file",
        type=Path,
        help="send the token in FILE as a bearer token (https, or a loopback URL, only)",
    )
    _usage_exits_3(status)


def emit(outcome: Outcome, output_format: str, output: Path | None) -> int:
    """Prints the result (JSON on stdout only without --output) and returns the exit code."""
    if output is not None:
        text = to_json(outcome) if output_format == "json" else table_text(outcome)
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as error:
            print(f"preflight: cannot write {output}: {error.strerror}", file=sys.stderr)
            return EXIT_USAGE
    if output_format == "json" and output is None:
        sys.stdout.write(to_json(outcome))
    else:
        render_table(outcome, console_for(sys.stdout))
    sys.stdout.flush()
    return outcome.exit_code


def _check(args: argparse.Namespace) -> int:
    from preflight.check import load_check_agent_config, run_check
    from preflight.mirrors import resolve_mirrors
    from preflight.profile import load_profile

    try:
        profile = load_profile(args.profile)
        agent = load_check_agent_config(args.config, args.host_root)
        mirrors = resolve_mirrors(profile, _mirror_arguments(args.mirror))
    except ConfigError as error:
        print(f"preflight check: config error:\n{error}", file=sys.stderr)
        return EXIT_USAGE
    if args.kubeconfig is not None and not args.kubeconfig.is_file():
        print(f"preflight check: --kubeconfig {args.kubeconfig}: no such file", file=sys.stderr)
        return EXIT_USAGE
    outcome = asyncio.run(
        run_check(
            profile,
            agent,
            node_name=args.node_name,
            kubeconfig=args.kubeconfig,
            cluster_domain=args.cluster_domain,
            show_progress=not args.quiet,
            mirrors=mirrors,
        )
    )
    return emit(outcome, args.format, args.output)


def _mirror_arguments(values: list[str]) -> dict[str, str]:
    """`--mirror TARGET=HOST[:PORT]` options as the collector's `mirrors` mapping."""
    mirrors: dict[str, str] = {}
    for value in values:
        target, sep, address = value.partition("=")
        if not sep or not target.strip() or not address.strip():
            raise ConfigError(f"--mirror {value!r}: expected TARGET=HOST[:PORT]")
        if target.strip() in mirrors:
            raise ConfigError(f"--mirror {value!r}: target {target.strip()!r} given twice")
        mirrors[target.strip()] = address.strip()
    return mirrors


def _status(args: argparse.Namespace) -> int:
    from preflight.status import DEFAULT_COLLECTOR, Access, poll

    collector = args.collector or DEFAULT_COLLECTOR

    def waiting(outcome: Outcome) -> None:
        blocking = [r.requirement for r in outcome.rows if r.status in ("fail", "unknown")]
        print(
            f"preflight status: not ready yet ({', '.join(blocking)}); polling {collector}",
            file=sys.stderr,
            flush=True,
        )

    access = Access(ca_file=args.ca_file, token_file=args.token_file)
    outcome = poll(collector, args.wait, on_wait=waiting, access=access)
    return emit(outcome, args.format, args.output)


def run(args: argparse.Namespace) -> int:
    if args.command == "check":
        return _check(args)
    if args.command == "status":
        return _status(args)
    raise SystemExit(f"unknown command {args.command}")
