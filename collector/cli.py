"""`preflight-collector`: aggregate agent reports, judge requirements, serve metrics and pages."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from collector.allocator import fix_mmap_threshold
from collector.config import ConfigError, load_config
from collector.encoder import EncoderProcess
from collector.judging_process import JudgingProcess
from collector.service import CollectorService
from preflight.mirrors import resolve_mirrors
from preflight.profile import load_profile

EXIT_CONFIG = 2


async def serve(service: CollectorService) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="preflight-collector", description="Collect agent reports and judge the cluster."
    )
    parser.add_argument("--config", type=Path, help="collector YAML config (default: built-in)")
    parser.add_argument("--check-config", action="store_true", help="validate config and exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config)
        source = args.config or "built-in defaults"
        try:
            profile = load_profile(config.profile)
        except ConfigError as error:
            # Name where the profile was chosen, then what is wrong with it.
            raise ConfigError(f"{source}: key 'profile': {error}") from None
        try:
            resolve_mirrors(profile, config.mirrors)
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
        if args.check_config:
            # The config alone: the TLS and token files live where it is deployed.
            print(f"preflight-collector: config OK ({args.config or 'built-in defaults'})")
            return 0
        # Before the state fills: what each scrape frees goes back to the system.
        fix_mmap_threshold()
        try:
            # Reads the TLS and token files. Judging and /metrics text run in child
            # processes, off the GIL that Report handlers need.
            service = CollectorService(
                config, metrics_encoder=EncoderProcess(), judging_process=JudgingProcess()
            )
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
    except ConfigError as error:
        print(f"preflight-collector: config error:\n{error}", file=sys.stderr)
        return EXIT_CONFIG
    asyncio.run(serve(service))
    return 0


if __name__ == "__main__":
    sys.exit(main())
