"""A FUSE filesystem that hangs on demand: the hung NAS of the mount tests and of chaos.

`python -m tests.support.hung_fuse MOUNTPOINT BLOCK_FILE CALLS_LOG` mounts it (foreground,
until unmounted or killed). While BLOCK_FILE exists, getattr and statfs never answer, as a
hard NFS mount whose server is gone: each blocked request is appended to CALLS_LOG, so a
test can count how many calls the agent started on the hung path. Removing BLOCK_FILE
releases every blocked call. Used by tests/agent/test_mounts_real.py, tests/e2e/
test_hung_nas.py and bench/bench_chaos.py; needs /dev/fuse, fusermount3 and mfusepy.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any


def missing_requirements() -> str | None:
    """Why a hanging FUSE filesystem cannot be mounted here, or None."""
    if os.geteuid() != 0:
        return "needs root for mount and PID namespaces"
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        return "needs /dev/fuse and fusermount3 (Debian fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy or libfuse3 not loadable: {exc}"
    return None


def serve(mountpoint: str, block_file: str, calls_log: str) -> None:
    """A FUSE filesystem whose getattr and statfs hang while `block_file` exists."""
    import mfusepy

    class Hanging(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def _gate(self, op: str) -> None:
            if os.path.exists(block_file):
                with open(calls_log, "a") as log:
                    log.write(op + "\n")
            while os.path.exists(block_file):
                time.sleep(0.05)

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            self._gate("getattr")
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
            raise mfusepy.FuseOSError(errno.ENOENT)

        def statfs(self, path: str) -> dict[str, int]:
            self._gate("statfs")
            return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1000, "f_bfree": 500,
                    "f_bavail": 500}  # fmt: skip

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", ".."]

    mfusepy.FUSE(Hanging(), mountpoint, foreground=True, fsname="pf-mounts-hang")


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.argv[3])
