"""The agent's only window on the host: every /proc, /sys and /etc path goes through HostFS.

In a pod the host's root is mounted read-only at /host (``--host-root /host``); in tests
the root is a fixture tree of /proc and /sys (node_exporter style). Paths are always given
relative to that root ("proc/meminfo" or "/proc/meminfo" mean the same file), and a path
can never climb out of it with "..".

Reading and parsing are kept apart: HostFS only reads; the probes parse the text.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = ["HostFS"]

# Kernel text files are small; a cap keeps a wrong path (a huge file) from eating memory.
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
_CHUNK = 64 * 1024


class HostFS:
    """Reads files of the host through a root path (default "/")."""

    def __init__(self, root: Path = Path("/")) -> None:
        root = Path(root)
        if not root.is_absolute():
            root = root.absolute()
        self._root = root

    @property
    def root(self) -> Path:
        return self._root

    def __repr__(self) -> str:
        return f"HostFS({str(self._root)!r})"

    def path(self, rel: str | PurePosixPath) -> Path:
        """The local path of host path `rel` (absolute or relative, never with "..")."""
        parts = PurePosixPath(rel).parts
        if parts and parts[0] == "/":
            parts = parts[1:]
        if ".." in parts:
            raise ValueError(f"host path must not contain '..': {str(rel)!r}")
        return self._root.joinpath(*parts)

    def read_text(self, rel: str | PurePosixPath, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
        """The text of a host file (UTF-8, undecodable bytes escaped); raises OSError."""
        chunks: list[bytes] = []
        left = max_bytes
        # Unbuffered, in modest chunks: /proc/sys handlers allocate the whole requested
        # size in the kernel and fail with ENOMEM on a 4 MiB read.
        with open(self.path(rel), "rb", buffering=0) as f:
            while left > 0:
                chunk = f.read(min(left, _CHUNK))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        return b"".join(chunks).decode("utf-8", errors="surrogateescape")

    def read_text_or_none(
        self, rel: str | PurePosixPath, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> str | None:
        """Like read_text, but None when the file is absent or unreadable.

        A missing fact is a fact (a node without /sys/bus/pci, a kernel without
        MemAvailable), not an error.
        """
        try:
            return self.read_text(rel, max_bytes)
        except OSError:
            return None

    def exists(self, rel: str | PurePosixPath) -> bool:
        return self.path(rel).exists()

    def is_dir(self, rel: str | PurePosixPath) -> bool:
        return self.path(rel).is_dir()

    def listdir(self, rel: str | PurePosixPath) -> list[str]:
        """Sorted entry names of a host directory; raises OSError."""
        return sorted(os.listdir(self.path(rel)))

    def readlink(self, rel: str | PurePosixPath) -> str:
        """The target of a host symlink, as written (not resolved); raises OSError.

        sysfs links such as a PCI device's ``driver`` point into /sys by relative paths;
        only the last component (the driver's name) is meaningful to callers.
        """
        return os.readlink(self.path(rel))

    def statvfs(self, rel: str | PurePosixPath) -> os.statvfs_result:
        """statvfs(2) of a host path; raises OSError. May block on a hung mount."""
        return os.statvfs(self.path(rel))

    def read_mountinfo(self) -> str:
        """The host's mount table: proc/1/mountinfo (the host's init, so the host's mount
        namespace, not the agent container's), else proc/self/mountinfo; raises OSError."""
        try:
            return self.read_text("proc/1/mountinfo")
        except OSError:
            return self.read_text("proc/self/mountinfo")
