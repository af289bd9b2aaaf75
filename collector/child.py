"""A helper process of the collector: CPU-bound work off the ingest process's GIL.

gRPC's Report handler threads need the collector's GIL for a few hundred microseconds
per report; every millisecond of Python the same process spends elsewhere (judging
10,000 nodes, formatting their /metrics text) makes Reports queue behind it
(docs/performance.md, "helper processes"). A ChildProcess runs one module's `serve`
loop in a fresh interpreter (`python -m <module>`, not a fork: the parent runs gRPC's
threads; not multiprocessing's spawn either, which runs the parent's main script
again) and exchanges pickled messages with it over a socket pair, one call at a time.

A child that dies, stops answering within its time, or raises is stopped; the caller
gets None and does the work in process, and another child is started at the first
call after RESTART_AFTER_SECONDS. `generation` counts the children started, so a
caller that keeps state in the child knows when it must send everything again.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from collector.allocator import fix_mmap_threshold

log = logging.getLogger(__name__)

__all__ = ["ChildProcess", "serve"]

# After a failure the caller works in process for this long before a new child.
RESTART_AFTER_SECONDS = 10.0
# The first call also waits for the child's imports (about a second here).
FIRST_ANSWER_SECONDS = 60.0
STOP_SECONDS = 2.0
# How much lower a child's CPU priority is than the collector's (nice, added).
CHILD_NICENESS = 10


class ChildProcess:
    """One child running `python -m module`; thread-safe (one call at a time)."""

    def __init__(self, module: str, what: str) -> None:
        self.module = module
        self.what = what  # for the log: "metrics encoder", "judging"
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._answered = False
        self._failed_at = -RESTART_AFTER_SECONDS
        self.generation = 0
        self.calls = 0
        self.failures = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def start(self) -> None:
        """Starts the child now (it imports while the collector starts), not at first use."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> Connection | None:
        if self._connection is not None:
            return self._connection
        if time.monotonic() - self._failed_at < RESTART_AFTER_SECONDS:
            return None
        ours, theirs = socket.socketpair()
        try:
            # -P: the parent's sys.path decides where collector comes from, not the
            # working directory (a checkout there would be imported instead).
            process = subprocess.Popen(
                [sys.executable, "-P", "-m", self.module, "--fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError as error:
            ours.close()
            log.error("%s process not started (%s): working in process", self.what, error)
            self._failed_at = time.monotonic()
            return None
        finally:
            theirs.close()
        self._connection = Connection(ours.detach())
        self._process, self._answered = process, False
        self.generation += 1
        return self._connection

    def call(
        self, message: object, answer_seconds: float, check: Callable[[object], bool]
    ) -> object | None:
        """The child's answer to `message`, if it gives one within `answer_seconds` that
        `check` accepts; else None (the child is stopped, see module)."""
        with self._lock:
            connection = self._ensure()
            if connection is None:
                return None
            wait = answer_seconds if self._answered else max(answer_seconds, FIRST_ANSWER_SECONDS)
            try:
                connection.send(message)
                if not connection.poll(wait):
                    raise TimeoutError(f"no answer within {wait:g}s")
                answer: object = connection.recv()
                if not check(answer):
                    raise ValueError(f"unexpected answer of type {type(answer).__name__}")
            except Exception as error:
                # Whatever went wrong, this child is not trusted again.
                self.failures += 1
                log.error("%s process failed (%s): working in process", self.what, error)
                self._stop()
                self._failed_at = time.monotonic()
                return None
            self._answered = True
            self.calls += 1
            return answer

    def _stop(self) -> None:
        connection, process = self._connection, self._process
        self._connection = self._process = None
        if connection is not None:
            connection.close()  # the child reads EOF and returns
        if process is not None:
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_SECONDS)

    def close(self) -> None:
        with self._lock:
            self._stop()


def serve(what: str, handle: Callable[[object], object], niceness: int = CHILD_NICENESS) -> None:
    """A child's main: answers every message with `handle(message)` until EOF, at
    `niceness` below the collector's CPU priority."""
    parser = argparse.ArgumentParser(description=f"the collector's {what} process")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the collector")
    connection = Connection(parser.parse_args().fd)
    # Messages of ~1 MB (a batch) to ~40 MB (every node, after a restart) come and go:
    # as in the parent, blocks that large must go back to the system when freed.
    fix_mmap_threshold()
    # Behind ingest for the CPU: a Report handler in the parent gets a core before this
    # background work does (it only makes verdicts or /metrics text a little later).
    os.setpriority(os.PRIO_PROCESS, 0, niceness)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s %(name)s ({what}): %(message)s"
    )
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return  # the parent is gone or closed the socket
        connection.send(handle(message))
