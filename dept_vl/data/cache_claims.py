"""Several writers filling one feature cache at once, without colliding or repeating each other's work.

The images to cache are cut into chunks (one shard each) the same way by every writer. Before encoding a chunk a
writer creates ``claims/<chunk key>.claim`` with O_EXCL; the one that succeeds encodes it, writes its shard under
a name no other writer uses, and removes the claim. The others skip the chunk and come back to it once it is
released (then it is cached and they move on) or once its owner is dead: a claim of a process that no longer
runs on this machine, or (on a shared file system, from another machine) one not touched for ``STALE_AFTER``
seconds, is taken over. So ``accelerate launch`` processes split the work between them, two ``dept-vl features``
started at once share it, and a killed run resumes with the shards it finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Sequence

STALE_AFTER = 600.0  # seconds a claim from another machine may go without a heartbeat


def chunk_key(image_ids: Sequence[str]) -> str:
    """A name for a chunk of image ids, the same in every writer."""
    return hashlib.sha1("\n".join(image_ids).encode()).hexdigest()[:20]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it runs
        return True
    return True


class Claim:
    """A held claim: ``touch()`` while working on it (a heartbeat), ``release()`` when done or failed."""

    def __init__(self, path: Path):
        self.path = path

    def touch(self) -> None:
        try:
            os.utime(self.path)
        except OSError:
            pass

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


class Claims:
    """The claims of one cache directory."""

    def __init__(self, root: Path):
        self.dir = Path(root) / "claims"
        self.owner = {"host": socket.gethostname(), "pid": os.getpid()}

    def claim(self, key: str) -> Claim | None:
        """The claim on ``key``, or None while another live writer holds it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{key}.claim"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                if not self.is_stale(path):
                    return None
                path.unlink(missing_ok=True)  # its owner died: take it over
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(self.owner, fh)
            return Claim(path)
        return None

    def is_stale(self, path: Path) -> bool:
        """Whether the claim at ``path`` was left by a writer that is gone."""
        try:
            age = time.time() - path.stat().st_mtime
            owner = json.loads(path.read_text() or "{}")
        except FileNotFoundError:
            return False  # just released: the next attempt takes it
        except (OSError, ValueError):
            owner = {}
        if owner.get("host") == self.owner["host"] and isinstance(owner.get("pid"), int):
            return owner["pid"] != os.getpid() and not _alive(owner["pid"])
        return age > (STALE_AFTER if owner else 60.0)  # an empty claim: its writer died before writing its name
