"""Output folders every command checks before any work: ``check_output_dir`` (not a file, not inside the data it
reads, writable) and ``exclusive`` (one run at a time writes into a folder)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import HLGFAError


def check_output_dir(out: Path, inputs: list[Path] = (), what: str = "--out") -> Path:
    """Before any work: ``out`` is not a file, not inside (or the same as) an input folder, and can be written.

    Only input *folders* count: a run would read back what it wrote inside one (a second ``predict`` of the folder
    would score its own overlays). A single image, or an input that does not exist (its own check says so), leaves
    ``out`` free to be next to it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HLGFAError(f"{what} {out} is a file; give a folder.")
    resolved = out.resolve()
    for source in inputs:
        folder = Path(source).resolve()
        if not folder.is_dir():
            continue
        if resolved == folder or folder in resolved.parents:
            raise HLGFAError(f"{what} {out} is inside the input folder {folder}; write the results elsewhere.")
    existing = resolved
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        read_only = existing.is_dir() and os.statvfs(existing).f_flag & os.ST_RDONLY
        why = f"{existing} is on a read-only file system" if read_only else f"no permission on {existing}"
        raise HLGFAError(f"{what} {out} cannot be written ({why}); choose another folder.")
    return out


@contextmanager
def exclusive(out: Path, beside: bool = False):
    """Hold a lock for the duration; a second run into the same folder is refused in one line.

    The lock is ``out/.hlgfa.lock``, or with ``beside`` ``.<name>.hlgfa.lock`` next to ``out`` (for a folder that must
    not exist before the run ends: a checkpoint is written whole, then put in place); either is removed at the end,
    so a finished run leaves only its results."""
    import fcntl

    if beside:
        folder = out.resolve()  # "." or "run/.." named by what they are
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = folder.parent / f".{folder.name}.hlgfa.lock"
    else:
        out.mkdir(parents=True, exist_ok=True)
        lock = out / ".hlgfa.lock"
    handle = open(lock, "w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise HLGFAError(f"another hlgfa-lite run is writing into {out}; wait for it or choose another --out.") \
                from None
        try:
            yield
        finally:  # removed while still held: a run that opens it later finds a fresh file
            lock.unlink(missing_ok=True)
    finally:
        handle.close()
