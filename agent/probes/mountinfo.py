"""Parsing /proc/<pid>/mountinfo and finding the mount that holds a path.

mountinfo, not psutil or /proc/mounts: psutil hides network mounts unless asked and can
block on a dead NFS server, while mountinfo is kernel text that never touches the
filesystems it lists. Format (proc(5)), one mount per line:

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    id parent maj:min root mount-point mount-options optional-fields... - type source super-options

Paths escape space, tab, newline and backslash as octal (``\\040`` ...).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

__all__ = [
    "NETWORK_FS_TYPES",
    "NETWORK_FUSE_SUBTYPES",
    "MountEntry",
    "MountinfoError",
    "find_mount",
    "is_network_filesystem",
    "parse_mountinfo",
    "unescape_octal",
]

# Kernel filesystems that live on another machine (or a cluster of them).
NETWORK_FS_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "lustre",
        "beegfs",
        "gpfs",
        "wekafs",
        "afs",
        "ocfs2",
        "gfs2",
        "orangefs",
        "pvfs2",
        "panfs",
        "9p",
    }
)
# FUSE daemons that serve network storage: mountinfo shows them as "fuse.<subtype>".
NETWORK_FUSE_SUBTYPES = frozenset(
    {
        "sshfs",
        "glusterfs",
        "ceph",
        "ceph-fuse",
        "cephfs",
        "s3fs",
        "rclone",
        "gcsfuse",
        "goofys",
        "mountpoint-s3",
        "juicefs",
        "beegfs",
        "lustre",
        "wekafs",
        "weka",
        "quobyte",
        "moosefs",
        "mfs",
        "lizardfs",
        "seaweedfs",
        "alluxio-fuse",
        "blobfuse",
        "blobfuse2",
        "davfs",
        "cvmfs",
        "cvmfs2",
        "xtreemfs",
        "gpfs",
    }
)

_OCTAL = re.compile(r"\\([0-7]{3})")


class MountinfoError(ValueError):
    """A line that is not mountinfo format; names the line number."""


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent_id: int
    major_minor: str
    root: str  # the directory of the filesystem mounted here ("/" unless a bind of a subdir)
    mount_point: str
    mount_options: str  # per-mount: ro/rw, nosuid, relatime ...
    optional_fields: tuple[str, ...]  # shared:N, master:N ...
    fs_type: str
    source: str
    super_options: str  # per-superblock: vers=4.1,addr=... for NFS

    @property
    def read_only(self) -> bool:
        return "ro" in self.mount_options.split(",") or "ro" in self.super_options.split(",")

    @property
    def options(self) -> str:
        """Mount and superblock options merged, first occurrence kept."""
        seen: dict[str, None] = {}
        for opt in (*self.mount_options.split(","), *self.super_options.split(",")):
            if opt:
                seen.setdefault(opt, None)
        return ",".join(seen)

    @property
    def network(self) -> bool:
        return is_network_filesystem(self.fs_type)


def unescape_octal(field: str) -> str:
    """Undo the kernel's octal escapes: "/mnt/my\\040share" -> "/mnt/my share"."""
    if "\\" not in field:
        return field
    raw = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)
    # The escapes encode bytes; names that are not UTF-8 keep them as surrogates.
    return raw.encode("latin-1", errors="surrogateescape").decode("utf-8", errors="surrogateescape")


def is_network_filesystem(fs_type: str) -> bool:
    """True for NFS, SMB, Ceph, Gluster, Lustre, BeeGFS, GPFS, Weka and network FUSE types."""
    fs_type = fs_type.lower()
    if fs_type in NETWORK_FS_TYPES:
        return True
    main, _, subtype = fs_type.partition(".")
    return main in ("fuse", "fuseblk") and subtype in NETWORK_FUSE_SUBTYPES


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Every mount in mountinfo order (later lines are mounted on top of earlier ones)."""
    entries: list[MountEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
        except ValueError:
            raise MountinfoError(f"mountinfo line {number}: no ' - ' separator: {line!r}") from None
        if separator < 6 or len(fields) < separator + 3:
            raise MountinfoError(f"mountinfo line {number}: too few fields: {line!r}")
        try:
            mount_id, parent_id = int(fields[0]), int(fields[1])
        except ValueError:
            raise MountinfoError(f"mountinfo line {number}: mount ids are not numbers") from None
        entries.append(
            MountEntry(
                mount_id=mount_id,
                parent_id=parent_id,
                major_minor=fields[2],
                root=unescape_octal(fields[3]),
                mount_point=unescape_octal(fields[4]),
                mount_options=fields[5],
                optional_fields=tuple(fields[6:separator]),
                fs_type=unescape_octal(fields[separator + 1]),
                source=unescape_octal(fields[separator + 2]),
                super_options=" ".join(fields[separator + 3 :]),
            )
        )
    return entries


def _covers(mount_point: str, path: str) -> bool:
    if mount_point == "/":
        return True
    return path == mount_point or path.startswith(mount_point + "/")


def find_mount(entries: list[MountEntry], path: str) -> tuple[MountEntry | None, bool]:
    """(the mount holding `path`, whether `path` is itself its mount point).

    The longest covering mount point wins; of stacked mounts on one point the last listed
    (the top one). `path` is normalised lexically: symlinks are not followed, since
    resolving them would touch the (possibly hung) filesystem.
    """
    path = posixpath.normpath(path) if path else path
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    best: MountEntry | None = None
    for entry in entries:
        if not _covers(entry.mount_point, path):
            continue
        if best is None or len(entry.mount_point) >= len(best.mount_point):
            best = entry
    return best, best is not None and best.mount_point == path
