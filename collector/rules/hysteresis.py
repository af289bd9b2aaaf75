"""No flapping: a requirement turns `fail` only after N consecutive failing observations,
and leaves `fail` only after M consecutive non-failing ones (profile `hysteresis`).

An observation is one evaluation of a changed cluster state (a new report, a node
going stale, a new Kubernetes read). Other transitions (pass, warn, unknown) are
immediate. `since` is when the shown status began; it lives in memory only, so a
restarted collector starts every requirement afresh (documented in docs/api.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from collector.rules.model import Verdict
from preflight.profile import Hysteresis


@dataclass
class _Track:
    shown: Verdict
    since: float
    streak: int = 0  # consecutive observations pulling toward the other side of `fail`


class HysteresisTracker:
    def __init__(self, settings: Hysteresis) -> None:
        self.settings = settings
        self._tracks: dict[str, _Track] = {}

    def observe(self, raw: list[Verdict], now: float) -> list[Verdict]:
        shown = []
        for verdict in raw:
            track = self._tracks.get(verdict.requirement)
            if track is None:
                # A fresh collector knows nothing yet: start from unknown, so even a
                # first failing observation must be confirmed like any other.
                start = Verdict(verdict.requirement, "unknown", "no observation yet")
                track = self._tracks[verdict.requirement] = _Track(start, now)
            shown.append(self._step(track, verdict, now))
        return shown

    def _step(self, track: _Track, verdict: Verdict, now: float) -> Verdict:
        was_failing = track.shown.status == "fail"
        crossing = (verdict.status == "fail") != was_failing
        if not crossing:
            track.streak = 0
            if verdict.status != track.shown.status:
                track.since = now
            track.shown = verdict
            return replace(verdict, since=track.since)
        track.streak += 1
        needed = self.settings.pass_after if was_failing else self.settings.fail_after
        if track.streak >= needed:
            track.streak = 0
            track.shown = verdict
            track.since = now
            return replace(verdict, since=now)
        direction = "recovering" if was_failing else "failing"
        return replace(
            track.shown,
            since=track.since,
            reason=f"{track.shown.reason} (now {direction}, {track.streak}/{needed}: "
            f"{verdict.reason})",
        )
