"""Writing files so that no reader ever sees half of one: the package's single place that replaces files.

* ``write_text`` / ``write_json``: a temporary file beside the target, synced, then renamed over it.
* ``replace_folder``: a folder (a checkpoint) built complete beside the target, synced, then exchanged with it in
  one ``renameat2(RENAME_EXCHANGE)`` call (Linux), so the target holds the old or the new folder at every moment.
  Where the exchange is not available the old folder is renamed aside and put back if anything fails; a kill
  between the two renames leaves the old folder complete in ``.NAME.old-*`` beside the target. Files in the old
  folder that the builder did not write (metrics, figures) are carried over.
* ``replace_entries``: only the named entries of a folder (a Space's ``app.py``, ``hlgfa_lite/``) are replaced, one
  by one, each atomically; everything else in the folder (``.git``, the user's files) is never touched.

One error contract for all of them: a storage error (full disk, read-only mount, no permission, a link in the way,
or a library's own I/O error such as safetensors') becomes one ``HLGFAError`` line that names the target, the
reason and what to do, and states what became of the previous files only after looking. The temporary files and
folders are removed whatever happens; a link as the target is followed, so the link keeps pointing at the result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
import stat
import uuid
import warnings
from pathlib import Path
from typing import Callable

from safetensors import SafetensorError

from ..errors import HLGFAError

STORAGE_ERRORS = (OSError, SafetensorError)  # what the file system (or a library writing to it) raises
ADVICE = {errno.ENOSPC: "the disk is full: free space or choose another location",
          errno.EDQUOT: "the disk quota is used up: free space or choose another location",
          errno.EROFS: "the location is read-only: choose another location",
          errno.EACCES: "permission denied: fix the permissions or choose another location",
          errno.EPERM: "permission denied: fix the permissions or choose another location",
          errno.EXDEV: "the target is a mount point or on another disk: choose a folder inside it"}
GENERAL_ADVICE = "fix the location (space, permissions, links) or choose another, then run again"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


# --- the error contract -----------------------------------------------------------------------------------------
def error_number(exc: BaseException) -> int | None:
    """The errno behind ``exc``: an OSError's own, the first failure in a ``shutil.Error`` list, or the
    ``[Errno N]`` / ``os error N`` / ``code: N`` in a library's message (safetensors: ``I/O error: No space left on
    device (os error 28)``)."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        return error_number(OSError(str(exc.args[0][0][-1])))
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    found = re.search(r"\[Errno (\d+)\]|\bos error (\d+)|\bcode: (\d+)", str(exc))
    return int(next(group for group in found.groups() if group)) if found else None


def reason_of(exc: BaseException) -> str:
    """A short reason: the system's words for the errno, else the first line of the message, cut to 100 chars."""
    number = error_number(exc)
    if number is not None:
        return os.strerror(number)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:100]


def _identity(path: Path) -> tuple[int, int] | None:
    """Device and inode of what sits at ``path`` (not following a final link), or None if nothing does."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _state(target: Path, before: tuple[int, int] | None, what: str, aside: Path | None = None,
           shown: Path | None = None) -> str:
    """What became of the previous ``what`` at ``target`` (named ``shown``), as found now (never assumed)."""
    now = _identity(target)
    target = shown or target
    if before is None:
        return f"nothing was written to {target}" if now is None else f"check {target} before using it"
    if now == before:
        return f"the previous {what} in {target} is unchanged"
    if aside is not None and _identity(aside) == before:
        return f"the previous {what} is in {aside}: rename it back to {target}"
    return f"check {target} before using it"


def storage_error(exc: BaseException, target: Path, what: str, state: str) -> HLGFAError:
    advice = ADVICE.get(error_number(exc), GENERAL_ADVICE)
    line = f"cannot write the {what} {target} ({reason_of(exc)}); {state}; {advice}."
    return HLGFAError(" ".join(line.split()))


# --- small steps --------------------------------------------------------------------------------------------------
def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (best effort: some file systems cannot sync a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_tree(folder: Path) -> None:
    """Every file under ``folder`` on disk, then every folder's entries."""
    for parent, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(parent, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(parent))


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where this kernel or file system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    number = ctypes.get_errno()
    if number in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(number, os.strerror(number), str(b))


def real_target(path: str | Path, folder: bool) -> Path:
    """``path`` with every link resolved, so a rename replaces what a link points at, never the link itself."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise HLGFAError(f"{path} is a link to {os.readlink(path)}, which does not exist; create it or give "
                         "another location.")
    real = Path(os.path.realpath(path))
    if folder and real.exists() and not real.is_dir():
        raise HLGFAError(f"{path} is a file, not a folder; choose another location.")
    if not folder and real.is_dir():
        raise HLGFAError(f"{path} is a folder; give a file name (e.g. {path / 'metrics.json'}).")
    return real


def _fresh_folder(parent: Path, prefix: str) -> Path:
    """A new, empty folder beside the target (created with the user's umask; never an existing path or link)."""
    while True:
        candidate = parent / f"{prefix}{uuid.uuid4().hex[:10]}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    if os.path.lexists(path):
        warnings.warn(f"could not remove the temporary {path}; delete it by hand.", stacklevel=3)


# --- files ----------------------------------------------------------------------------------------------------
def write_bytes(path: str | Path, data: bytes, what: str = "file") -> Path:
    """``data`` into ``path`` atomically (temporary file beside it, synced, renamed over it); returns ``path``."""
    shown = Path(path)
    if shown.exists() and not shown.is_file() and not shown.is_dir():  # a pipe or terminal (--json /dev/stdout)
        return _write_through(shown, data, what)
    target = real_target(shown, folder=False)
    before = _identity(target)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(os.stat(target).st_mode) if before else 0o644
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:10]}.tmp"
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        tmp = None
        fsync_dir(target.parent)
    except STORAGE_ERRORS as exc:
        if tmp is not None:
            _remove(tmp)
            tmp = None
        raise storage_error(exc, shown, what, _state(target, before, what, shown=shown)) from None
    finally:
        if tmp is not None:
            _remove(tmp)
    return shown


def _write_through(shown: Path, data: bytes, what: str) -> Path:
    """Into a pipe or a device as it is: there is no previous content to keep, and replacing it would be wrong."""
    try:
        with open(shown, "ab") as handle:
            handle.write(data)
    except STORAGE_ERRORS as exc:
        raise storage_error(exc, shown, what, f"{shown} is not a file; what it received is unknown") from None
    return shown


def write_text(path: str | Path, text: str, what: str = "file") -> Path:
    return write_bytes(path, text.encode("utf-8"), what)


def write_json(path: str | Path, data, what: str = "file", allow_nan: bool = True) -> Path:
    """``data`` as indented JSON (NaN allowed by default: a metric with no defects to rank is NaN)."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=allow_nan) + "\n", what)


# --- folders --------------------------------------------------------------------------------------------------
def _carry_over(old: Path, new: Path) -> list[str]:
    """Entries of ``old`` the builder did not write in ``new`` (the user's metrics, figures, a log) are copied along;
    returns their names. The copies make the swap safe to kill: whatever moment it stops at, the live folder holds
    the user's files (``_return_originals`` then puts the originals back in place of the copies)."""
    carried = []
    for item in old.iterdir():
        if not os.path.lexists(new / item.name):
            if item.is_dir() and not item.is_symlink():
                shutil.copytree(item, new / item.name, symlinks=True)
            else:
                shutil.copy2(item, new / item.name, follow_symlinks=False)
            carried.append(item.name)
    return carried


def _return_originals(old: Path, live: Path, names: list[str]) -> None:
    """After the swap, each carried entry of the old folder replaces its copy in the live one, atomically. A program
    still writing to one of them (``fit --overwrite | tee run/fit.log``) writes on into the live folder; its lines
    after the copy would otherwise go into the old folder, removed next. Where an entry cannot be moved, the copy
    stays: the user's file as it was at the save."""
    for name in names:
        original, copy = old / name, live / name
        try:
            if original.is_dir() and not original.is_symlink():
                exchange(original, copy)  # the copy ends in the old folder, removed with it
            else:
                os.replace(original, copy)
        except OSError:
            pass


def _swap_in(staging: Path, target: Path, aside: list[Path]) -> None:
    """``staging`` becomes ``target``; the old ``target`` ends in ``staging`` (exchange) or in ``aside[0]``."""
    if exchange(staging, target):
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:10]}"
    os.rename(target, old)
    aside.append(old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)
        aside.clear()
        raise


def check_replaceable(target: str | Path, what: str = "folder") -> Path:
    """``target`` resolved (``real_target``), if ``replace_folder`` may put a new folder in its place: not the
    current folder or one that holds it. Replacing that would leave the shell (and anything else working there) in
    a deleted folder, its files seemingly gone; refused in one line, before any work."""
    real = real_target(target, folder=True)
    try:
        here = Path.cwd().resolve()
    except FileNotFoundError:  # the current folder was deleted already: nothing of it to protect
        return real
    if real == here or real in here.parents:
        raise HLGFAError(f"{target or '.'} is the folder you are in (or holds it); a {what} replaces its folder whole, "
                         f"so give it a folder of its own (e.g. {Path(target) / 'run'}).")
    return real


STAGING = re.compile(r"^\.(?P<name>.+)\.new-[0-9a-f]{10}$")  # the folder replace_folder builds beside a target


def stale_staging(target: str | Path) -> list[Path]:
    """The folders ``replace_folder`` built beside ``target`` and left there when its run was killed: a new
    checkpoint half written, or, killed after the swap, the old one it replaced. Only while ``target`` itself is
    whole (it exists), so none of them is the one copy of a checkpoint; and only the caller that holds the target's
    lock may call them stale (``folders.exclusive``): no other run can be writing them. (An old folder set aside as
    ``.<name>.old-*``, where the file system cannot swap two folders, is never called stale: it may be that copy.)"""
    real = real_target(target, folder=True)
    if not real.is_dir():
        return []
    return sorted(p for p in real.parent.iterdir()
                  if (m := STAGING.match(p.name)) and m["name"] == real.name and p.is_dir() and not p.is_symlink())


def replace_folder(target: str | Path, build: Callable[[Path], None], what: str = "folder") -> Path:
    """Call ``build(folder)`` on a new folder beside ``target``, then put it in ``target``'s place atomically,
    carrying over the old folder's other files. Returns ``target`` (as given; a link keeps pointing at it)."""
    shown = Path(target)
    real = check_replaceable(shown, what)
    before = _identity(real)
    aside: list[Path] = []
    staging = None
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        staging = _fresh_folder(real.parent, f".{real.name}.new-")
        build(staging)
        carried = _carry_over(real, staging) if before is not None else []
        sync_tree(staging)
        if before is None:
            os.rename(staging, real)  # fails if another process created a non-empty target meanwhile
            staging = None
        else:
            _swap_in(staging, real, aside)
            if aside:
                staging = aside[0]  # the old folder, to be removed now that the new one is in place
            _return_originals(staging, real, carried)
        fsync_dir(real.parent)
    except STORAGE_ERRORS as exc:
        raise storage_error(exc, shown, what, _state(real, before, what, aside[0] if aside else None, shown)) from None
    finally:
        if staging is not None:
            _remove(staging)
    return shown


def _check_entries(real: Path, staging: Path, names: list[str], shown: Path) -> None:
    """Before anything changes: each named entry the builder wrote replaces one of the same kind, never a link."""
    missing = sorted(set(names) - {p.name for p in staging.iterdir()})
    if missing:
        raise HLGFAError(f"the builder wrote no {', '.join(missing)}; nothing in {shown} was changed.")
    for name in names:
        old = real / name
        if old.is_symlink():
            raise HLGFAError(f"{shown / name} is a link; remove it (it would be replaced) or choose another folder.")
        if old.exists() and old.is_dir() != (staging / name).is_dir():
            kind = "folder" if old.is_dir() else "file"
            raise HLGFAError(f"{shown / name} is a {kind} of yours where a "
                             f"{'file' if kind == 'folder' else 'folder'} goes; move it away or choose another folder.")


def _replace_entry(new: Path, old: Path) -> None:
    if not new.is_dir():
        os.replace(new, old)
    elif not old.exists():
        os.rename(new, old)
    else:
        aside: list[Path] = []
        _swap_in(new, old, aside)
        _remove(aside[0] if aside else new)  # the previous entry, now out of the way


def replace_entries(target: str | Path, build: Callable[[Path], None], names: list[str],
                    what: str = "folder") -> Path:
    """Call ``build(folder)`` on a new folder beside ``target``, which must write ``names``; then replace each of
    those entries of ``target`` atomically (a folder by exchange). Nothing else in ``target`` is touched."""
    shown = Path(target)
    real = real_target(shown, folder=True)
    if _identity(real) is None:
        return replace_folder(shown, build, what)
    before = {name: _identity(real / name) for name in names}
    staging = None
    try:
        staging = _fresh_folder(real.parent, f".{real.name}.new-")
        build(staging)
        _check_entries(real, staging, names, shown)
        sync_tree(staging)
        for name in names:
            _replace_entry(staging / name, real / name)
        fsync_dir(real)
    except STORAGE_ERRORS as exc:
        changed = [name for name in names if _identity(real / name) != before[name]]
        state = (f"{shown} is unchanged" if not changed else
                 f"{', '.join(changed)} in {shown} were replaced, the rest not: run the command again")
        raise storage_error(exc, shown, what, state) from None
    finally:
        if staging is not None:
            _remove(staging)
    return shown
