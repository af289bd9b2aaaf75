"""KubeWatcher: keeps the collector's KubeFacts fresh in the background.

One `KubeSource.read()` every refresh interval, capped, jittered exponential backoff after
errors; after an error `latest()` carries that error (the rules then say `unknown`),
never the last good data as if it were current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from kubernetes import client as k8s_client

from collector.config import KubernetesConfig
from collector.kube.adapter import STANDALONE_ERROR, KubeSource, PlatformReader
from collector.kube.facts import KubeFacts

__all__ = ["KubeWatcher"]

log = logging.getLogger(__name__)


class KubeWatcher:
    """Keeps a fresh KubeFacts: a read every `refresh_interval`, backing off after errors.

    After a failed read `latest()` is that failure (error set, no nodes), so nothing reads
    stale nodes as current; `last_good` keeps the most recent successful view for display.
    Backoff after consecutive errors: `backoff_initial`, doubling, capped at `backoff_max`
    (default max(refresh_interval, 60 s)), each delay jittered to 50–100 % of itself.
    """

    def __init__(
        self,
        source: KubeSource,
        refresh_interval: float = 30.0,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if refresh_interval <= 0:
            raise ValueError("refresh_interval must be positive")
        if backoff_initial <= 0:
            raise ValueError("backoff_initial must be positive")
        self.source = source
        self.refresh_interval = refresh_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = (
            max(refresh_interval, 60.0) if backoff_max is None else max(backoff_max, 1e-3)
        )
        self._rng = rng or random.Random()
        self._latest = KubeFacts(
            error="Kubernetes API not read yet" if not source.standalone else STANDALONE_ERROR
        )
        self._last_good: KubeFacts | None = None
        self.consecutive_errors = 0
        self.reads = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @classmethod
    def from_config(
        cls,
        config: KubernetesConfig,
        *,
        configuration: k8s_client.Configuration | None = None,
        platform_reader: PlatformReader | None = None,
    ) -> KubeWatcher:
        """The watcher for `CollectorConfig.kubernetes`; `configuration` overrides the mode."""
        source = KubeSource.from_config(
            config, configuration=configuration, platform_reader=platform_reader
        )
        return cls(source, config.refresh_interval)

    def latest(self) -> KubeFacts:
        return self._latest

    @property
    def last_good(self) -> KubeFacts | None:
        return self._last_good

    def next_delay(self) -> float:
        """Seconds until the next read, given how many reads in a row failed."""
        if self.consecutive_errors == 0:
            return self.refresh_interval
        exponent = min(self.consecutive_errors - 1, 32)
        delay = min(self.backoff_max, self.backoff_initial * 2.0**exponent)
        return delay * (0.5 + 0.5 * self._rng.random())

    async def refresh(self) -> KubeFacts:
        """One read now; updates `latest()` (used by the loop, handy in tests)."""
        view = await self.source.read()
        self.reads += 1
        if view.error is None:
            if self.consecutive_errors:
                log.info("kube: API answers again (%d nodes)", len(view.nodes))
            self.consecutive_errors = 0
            self._last_good = view
        else:
            if self.consecutive_errors == 0 or view.error != self._latest.error:
                log.warning("kube: %s", view.error)
            self.consecutive_errors += 1
        self._latest = view
        self._changed.set()
        self._changed = asyncio.Event()
        return view

    async def next_view(self, timeout: float | None = None) -> KubeFacts:
        """Waits for the next completed read and returns its view."""
        await asyncio.wait_for(self._changed.wait(), timeout)
        return self._latest

    async def _run(self) -> None:
        while True:
            await self.refresh()
            if self.source.standalone:
                return  # nothing will ever change; the standalone view stays
            await asyncio.sleep(self.next_delay())

    async def start(self) -> None:
        """Starts refreshing in the background; the first read begins at once."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="kube-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
