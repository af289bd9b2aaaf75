"""Shared-volume probe: is each configured path mounted, what is it, does it answer, and
is it the same volume as on the other nodes.

Per configured path, every cycle:
1. the mount holding it, from the host's mountinfo (longest mount-point prefix): state
   ``mounted`` when the path is itself a mount point, ``not_mounted`` when only a parent
   mount covers it (that parent's filesystem is reported), fs type, source, options, ro,
   network or local;
2. on a worker thread under the probe's deadline: stat (``missing`` when absent),
   statvfs (capacity), when writes are expected a write -> read -> delete round trip
   of a small file in ``<path>/.preflight/`` (with its latency) and this node's marker
   (agent.probes.shared_marker), then a bounded random sample of the peers' markers.

A filesystem that does not answer makes the path ``stuck`` at the deadline, and stays
``stuck`` without any new call on that path until the blocked call returns
(agent.blocking); the other paths and the rest of the agent carry on. ``probe()`` never
raises: every failure is a result with a message.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.blocking import BlockingExecutor, DeadlineExceeded, KeyBusy, PoolExhausted
from agent.config import MountsConfig, SharedVolume
from agent.hostfs import HostFS
from agent.probes.mountinfo import MountEntry, find_mount, parse_mountinfo
from agent.probes.results import MountResult, SharedMarker, WriteCheck
from agent.probes.shared_marker import (
    PREFLIGHT_DIR,
    marker_filename,
    new_nonce,
    read_peer_markers,
    remove_own_marker,
    write_own_marker,
)

__all__ = ["MountProber"]

_MOUNT_TABLE_KEY = "\0mountinfo"  # never a path, so never collides with a volume key
_IO_PAYLOAD_BYTES = 64


class _Progress:
    """The step a worker is in, so a stuck result can say where it hung."""

    def __init__(self) -> None:
        self.step = "queued"


@dataclass
class _PathFacts:
    exists: bool
    capacity_bytes: int = 0
    free_bytes: int = 0
    write_check: WriteCheck = "not_expected"
    write_latency_seconds: float = 0.0
    marker: SharedMarker | None = None
    problems: tuple[str, ...] = ()


def _errtext(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{os.strerror(exc.errno)} ({exc.errno})"
    return f"{type(exc).__name__}: {exc}"


def _write_round_trip(volume: Path, node_name: str, progress: _Progress) -> tuple[float, str]:
    """Write, fsync, read back, compare and delete a small file; (latency, problem)."""
    directory = volume / PREFLIGHT_DIR
    target = directory / f"io-{marker_filename(node_name)}"
    payload = os.urandom(_IO_PAYLOAD_BYTES)
    started = time.monotonic()
    try:
        progress.step = "write check: mkdir"
        directory.mkdir(exist_ok=True)
        progress.step = "write check: write"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        progress.step = "write check: read"
        with open(target, "rb") as f:
            data = f.read(_IO_PAYLOAD_BYTES + 1)
        progress.step = "write check: delete"
        os.unlink(target)
    except OSError as exc:
        return time.monotonic() - started, f"write check failed at {progress.step}: {_errtext(exc)}"
    if data != payload:
        return time.monotonic() - started, "write check failed: read back other bytes"
    return time.monotonic() - started, ""


def _check_path(
    volume: Path,
    node_name: str,
    write_expected: bool,
    nonce: str,
    peer_sample: int,
    rng: random.Random,
    progress: _Progress,
) -> _PathFacts:
    """Everything that touches the volume, in one blocking call (one thread, one deadline)."""
    progress.step = "stat"
    try:
        os.stat(volume)
    except FileNotFoundError:
        return _PathFacts(exists=False)
    progress.step = "statvfs"
    st = os.statvfs(volume)
    facts = _PathFacts(
        exists=True, capacity_bytes=st.f_blocks * st.f_frsize, free_bytes=st.f_bavail * st.f_frsize
    )
    problems: list[str] = []
    marker = SharedMarker(nonce="", written_at=0.0)
    if write_expected:
        latency, problem = _write_round_trip(volume, node_name, progress)
        facts.write_latency_seconds = latency
        facts.write_check = "failed" if problem else "ok"
        if problem:
            problems.append(problem)
        progress.step = "marker write"
        try:
            marker.written_at = write_own_marker(volume, node_name, nonce)
            marker.nonce = nonce
        except OSError as exc:
            problems.append(f"marker write failed: {_errtext(exc)}")
    progress.step = "marker read"
    try:
        marker.peers, marker.markers_seen = read_peer_markers(volume, node_name, peer_sample, rng)
    except OSError as exc:
        problems.append(f"marker read failed: {_errtext(exc)}")
    facts.marker = marker
    facts.problems = tuple(problems)
    return facts


def _apply_mount(result: MountResult, entry: MountEntry | None) -> None:
    if entry is None:
        return
    result.fs_type = entry.fs_type
    result.source = entry.source
    result.options = entry.options
    result.read_only = entry.read_only
    result.network_filesystem = entry.network


class MountProber:
    """Probes the configured shared volumes; one instance lives as long as the agent."""

    def __init__(
        self,
        host: HostFS,
        node_name: str,
        config: MountsConfig,
        volumes: Callable[[], tuple[SharedVolume, ...]] | None = None,
    ) -> None:
        if not node_name:
            raise ValueError("node_name must not be empty")
        self._host = host
        self._node_name = node_name
        self._config = config
        # The volumes of the current probe plan (default: the config's, fixed).
        self._volumes = volumes or (lambda: config.volumes)
        # One outstanding call per volume plus the mount table: the pool never queues.
        self._executor = BlockingExecutor(
            max_workers=len(self._volumes()) + 2, name="preflight-mounts"
        )
        self._progress: dict[str, _Progress] = {}
        self._rng = random.Random()
        self._lock: asyncio.Lock | None = None
        self._closed = False

    @property
    def executor(self) -> BlockingExecutor:
        """The worker pool (tests count its threads and busy paths)."""
        return self._executor

    async def probe(self) -> list[MountResult]:
        """One result per configured volume, in config order; never raises.

        Returns within config.timeout (plus scheduling slack) however the filesystems
        behave.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._config.timeout
            volumes = self._volumes()
            # A new plan may bring more volumes: room for one call on each, still no queue.
            self._executor.ensure_workers(len(volumes) + 2)
            entries, table_problem = await self._mount_table()
            results = await asyncio.gather(
                *(self._probe_one(v, entries, table_problem, deadline) for v in volumes)
            )
        return list(results)

    async def close(self) -> None:
        """Remove this node's own markers (never anyone else's) and release idle workers."""
        if self._closed:
            return
        self._closed = True

        async def remove(volume: SharedVolume) -> None:
            key = posixpath.normpath(volume.path)
            if not volume.write_expected or not key.startswith("/"):
                return
            try:
                local = self._host.path(key)
                await self._executor.run(
                    key,
                    lambda: remove_own_marker(local, self._node_name),
                    self._config.timeout,
                )
            except Exception:
                pass  # stuck or gone: nothing more a shutting-down agent can do

        await asyncio.gather(*(remove(v) for v in self._volumes()))
        self._executor.shutdown()

    async def _mount_table(self) -> tuple[list[MountEntry], str]:
        try:
            entries = await self._executor.run(
                _MOUNT_TABLE_KEY,
                lambda: parse_mountinfo(self._host.read_mountinfo()),
                self._config.timeout,
            )
        except KeyBusy:
            return [], "reading the mount table is still blocked"
        except DeadlineExceeded:
            return [], f"mount table not read within {self._config.timeout:g}s"
        except Exception as exc:
            return [], f"cannot read the mount table: {_errtext(exc)}"
        return entries, ""

    async def _probe_one(
        self,
        volume: SharedVolume,
        entries: list[MountEntry],
        table_problem: str,
        deadline: float,
    ) -> MountResult:
        started = time.monotonic()
        result = MountResult(path=volume.path, state="error")
        try:
            await self._fill(result, volume, entries, table_problem, deadline)
        except Exception as exc:  # a probe failure is data, never an exception
            result.state = "error"
            result.message = f"internal error: {_errtext(exc)}"
        result.duration_seconds = time.monotonic() - started
        return result

    async def _fill(
        self,
        result: MountResult,
        volume: SharedVolume,
        entries: list[MountEntry],
        table_problem: str,
        deadline: float,
    ) -> None:
        if not volume.path.startswith("/"):
            result.message = "path must be absolute"
            return
        key = posixpath.normpath(volume.path)
        if table_problem:
            result.message = table_problem
            return
        entry, exact = find_mount(entries, key)
        _apply_mount(result, entry)

        busy_since = self._executor.busy_since(key)
        if busy_since is not None:
            progress = self._progress.get(key)
            step = progress.step if progress else "unknown step"
            result.state = "stuck"
            result.message = (
                f"earlier check still blocked in {step} for "
                f"{time.monotonic() - busy_since:.0f}s; not retried until it returns"
            )
            return

        progress = _Progress()
        self._progress[key] = progress
        local = self._host.path(key)
        nonce = new_nonce()
        timeout = max(deadline - asyncio.get_running_loop().time(), 0.0)
        try:
            facts = await self._executor.run(
                key,
                lambda: _check_path(
                    local,
                    self._node_name,
                    volume.write_expected,
                    nonce,
                    self._config.peer_sample,
                    self._rng,
                    progress,
                ),
                timeout,
            )
        except DeadlineExceeded:
            result.state = "stuck"
            result.message = (
                f"no answer within {self._config.timeout:g}s (blocked in {progress.step})"
            )
            return
        except KeyBusy:
            result.state = "stuck"
            result.message = "earlier check still blocked; not retried until it returns"
            return
        except PoolExhausted as exc:
            result.message = str(exc)
            return
        except OSError as exc:
            result.message = f"{progress.step} failed: {_errtext(exc)}"
            return

        if not facts.exists:
            result.state = "missing"
            result.message = "path does not exist"
            return
        result.state = "mounted" if exact else "not_mounted"
        result.capacity_bytes = facts.capacity_bytes
        result.free_bytes = facts.free_bytes
        result.write_check = facts.write_check
        result.write_latency_seconds = facts.write_latency_seconds
        result.marker = facts.marker
        problems = list(facts.problems)
        if not exact:
            where = entry.mount_point if entry else "?"
            problems.insert(0, f"not a mount point; on the {result.fs_type} mount at {where}")
        result.message = "; ".join(problems)
