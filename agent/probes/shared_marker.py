"""Proof that a shared volume is the same volume on every node: marker files.

Each cycle a node writes ``<volume>/.preflight/nodes/<node>`` (JSON: node, a fresh random
nonce, the time) and reads a bounded random sample of the other nodes' markers. The
collector compares what each node read with what the others wrote; the agent only reports.

Rules that keep many nodes on one NAS safe:
- a node writes, renames and deletes only files whose names it owns (``<node>`` and
  ``.<node>.tmp``); other nodes' markers are never touched, stale or not;
- the marker is replaced atomically (write a temp file in the same directory, fsync,
  rename), so a reader never sees half a marker;
- node names become file names through ``marker_filename``: no "/", no "..", no hidden
  files, bounded length, and a name that had to change gets a hash suffix so two nodes
  never share a file.

All functions here block (they touch the volume) and run on the BlockingExecutor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import secrets
import time
from pathlib import Path

from agent.probes.results import PeerMarker

__all__ = [
    "MARKER_DIR",
    "MAX_MARKER_BYTES",
    "decode_marker",
    "encode_marker",
    "marker_filename",
    "new_nonce",
    "read_peer_markers",
    "remove_own_marker",
    "write_own_marker",
]

PREFLIGHT_DIR = ".preflight"
MARKER_DIR = f"{PREFLIGHT_DIR}/nodes"
MAX_MARKER_BYTES = 4096
_MAX_NAME = 200
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def marker_filename(node_name: str) -> str:
    """A safe, unique file name for a node (Kubernetes node names pass through unchanged)."""
    cleaned = _SAFE.sub("_", node_name).lstrip(".")[:_MAX_NAME]
    if cleaned == node_name and cleaned:
        return cleaned
    digest = hashlib.sha256(node_name.encode("utf-8", errors="surrogateescape")).hexdigest()
    return f"{cleaned or 'node'}-{digest[:12]}"


def new_nonce() -> str:
    return secrets.token_hex(16)


def encode_marker(node_name: str, nonce: str, written_at: float) -> bytes:
    return json.dumps(
        {"node": node_name, "nonce": nonce, "written_at": written_at}, sort_keys=True
    ).encode()


def decode_marker(filename: str, data: bytes) -> PeerMarker | None:
    """A peer's marker, or None when it is not one (garbage, wrong types, too big)."""
    if len(data) > MAX_MARKER_BYTES:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    nonce, written_at, node = doc.get("nonce"), doc.get("written_at"), doc.get("node")
    if not isinstance(nonce, str) or not nonce or len(nonce) > 256:
        return None
    if isinstance(written_at, bool) or not isinstance(written_at, int | float):
        return None
    # Believe the name inside only if it maps to this very file; else the file name.
    name = node if isinstance(node, str) and marker_filename(node) == filename else filename
    return PeerMarker(node_name=name, nonce=nonce, written_at=float(written_at))


def write_own_marker(volume: Path, node_name: str, nonce: str) -> float:
    """Atomically (re)write this node's marker; returns the time written into it."""
    directory = volume / MARKER_DIR
    directory.mkdir(parents=True, exist_ok=True)
    name = marker_filename(node_name)
    temp = directory / f".{name}.tmp"
    written_at = time.time()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, encode_marker(node_name, nonce, written_at))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, directory / name)
    return written_at


def read_peer_markers(
    volume: Path, node_name: str, sample: int, rng: random.Random | None = None
) -> tuple[list[PeerMarker], int]:
    """(a random sample of at most `sample` peers' markers, number of peer markers present).

    Hidden files (other nodes' temp files) and this node's own marker are skipped;
    unreadable or garbage markers are left out of the sample.
    """
    directory = volume / MARKER_DIR
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return [], 0
    own = marker_filename(node_name)
    peers = sorted(n for n in names if not n.startswith(".") and n != own)
    chosen = (rng or random).sample(peers, min(sample, len(peers)))
    markers: list[PeerMarker] = []
    for name in sorted(chosen):
        try:
            with open(directory / name, "rb") as f:
                data = f.read(MAX_MARKER_BYTES + 1)
        except OSError:
            continue
        marker = decode_marker(name, data)
        if marker is not None:
            markers.append(marker)
    return markers, len(peers)


def remove_own_marker(volume: Path, node_name: str) -> None:
    """Delete this node's marker and temp file (clean shutdown); absent files are fine."""
    name = marker_filename(node_name)
    for filename in (name, f".{name}.tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(volume / MARKER_DIR / filename)
