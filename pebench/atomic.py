"""Writing files so that a crash or kill never leaves a truncated one under the final name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def claimed(path: Path) -> Iterator[bool]:
    """Claim the work that writes ``path`` among processes of this machine.

    Yields True when this process holds the claim (a ``.claim`` file beside ``path`` holding its
    PID, removed on exit), False when a live process holds it. A claim left by a process that has
    died (killed, machine restarted) is taken over, so an interrupted run can be resumed."""
    claim = path.with_name(path.name + ".claim")
    claim.parent.mkdir(parents=True, exist_ok=True)
    me = str(os.getpid())
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        with os.fdopen(fd, "w") as f:
            f.write(me)
    except FileExistsError:
        holder = claim.read_text().strip()
        if holder.isdigit() and holder != me and _alive(int(holder)):
            yield False
            return
        with atomic_path(claim) as tmp:
            tmp.write_text(me)
    if claim.read_text().strip() != me:  # another process took the stale claim over at the same moment
        yield False
        return
    try:
        yield True
    finally:
        if claim.exists() and claim.read_text().strip() == me:
            claim.unlink()
