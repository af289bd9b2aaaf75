"""Per-node report rate limit: a token bucket, so a flood from one node is slowed.

An honest agent reports when a result changes (at most once per probe cycle) and at
every heartbeat; a burst absorbs reconnects and retries. Beyond that a node is
answered RESOURCE_EXHAUSTED (counted `rate_limited`), which the agent treats like any
retryable failure: it backs off. Called from the gRPC handler threads: one lock.
"""

from __future__ import annotations

import threading


class RateLimiter:
    def __init__(self, min_interval: float, burst: int, max_tracked: int = 100_000) -> None:
        self.rate = 1.0 / min_interval
        self.burst = float(burst)
        self.max_tracked = max_tracked
        # node -> (tokens left, when last updated)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, node: str, now: float) -> bool:
        # Read and write back as one step: two handler threads reporting for one node must
        # not both spend the same token.
        with self._lock:
            return self._allow(node, now)

    def _allow(self, node: str, now: float) -> bool:
        tokens, last = self._buckets.get(node, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[node] = (tokens, now)
            return False
        self._buckets[node] = (tokens - 1.0, now)
        if len(self._buckets) > self.max_tracked:
            self._forget_full(now)
        return True

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled carries no information; dropping it keeps this bounded.
        refill = self.burst / self.rate
        for node in [n for n, (_, t) in self._buckets.items() if now - t >= refill]:
            del self._buckets[node]
