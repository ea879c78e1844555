"""Everything the demo writes to disk, and how it goes away: one folder per server process (stale ones of killed
processes swept at the next start), each visitor session's uploads and result pictures (``SessionFiles``), and the
stop-signal handlers that remove it all when the server stops."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .examples import is_copy_of_sample

OUTPUT_SECONDS = 900  # result pictures older than this are removed (the page fetched them long ago)
SESSION_SECONDS = 3600  # a session that neither closes its page nor calls for this long is over
# Everything the demo writes lives under one folder per server process: the demo's fit folders and result pictures,
# and Gradio's upload cache (GRADIO_TEMP_DIR points there while the demo serves). A session's files go when the
# session ends, the whole folder when the server stops (exit, SIGINT, SIGTERM, SIGHUP), and the folders of processes
# that were killed are removed at the next start.
DEMO_ROOT = Path(tempfile.gettempdir()) / "hlgfa_lite_demo"


def _process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc), "" where the system does not say: with
    the pid it names one process for good, so a folder is never taken for a live one whose pid was reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return ""


def _folder_name(pid: int) -> str:
    start = _process_start(pid)
    return f"pid-{pid}-{start}" if start else f"pid-{pid}"


def process_dir() -> Path:
    """This server process's folder (created on first use); everything the demo writes goes below it."""
    folder = DEMO_ROOT / _folder_name(os.getpid())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def serve_gradio_cache_from_process_dir() -> Path:
    """Make Gradio keep its uploads (and its copies of served files) in this process's folder, so that they go
    with it; call before any Gradio component is built. Gradio reads the variable when it builds a component and
    launches, and serves what the demo writes there in place, without copies."""
    folder = process_dir()
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _owner_gone(name: str) -> bool:
    """Whether the process that named a folder ``pid-PID[-START]`` has ended (a live process with the same pid but
    another start is a different one)."""
    pid_text, _, start = name.removeprefix("pid-").partition("-")
    try:
        pid = int(pid_text)
    except ValueError:
        return False  # not a folder of ours
    if pid == os.getpid() and name == _folder_name(pid):
        return False
    return not _alive(pid) or (bool(start) and start != _process_start(pid))


def remove_stale_folders(root: Path | None = None) -> list[Path]:
    """Remove the folders of demo processes that no longer run (a hard kill or a crash skipped their clean-up)."""
    root = root or DEMO_ROOT
    removed = []
    for folder in sorted(root.glob("pid-*")) if root.is_dir() else []:
        if _owner_gone(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def remove_process_folder() -> None:
    """At server stop: every upload, fit folder and result picture of this process."""
    shutil.rmtree(DEMO_ROOT / _folder_name(os.getpid()), ignore_errors=True)


def write_picture(picture: np.ndarray, suffix: str, folder: str | Path | None = None) -> str:
    """Save a result picture in ``folder`` (a session's, see ``SessionFiles``; default: the process's outputs)
    under a unique name (never rewritten while another request downloads one), prune the ones older than
    ``OUTPUT_SECONDS`` there, and return its path for Gradio to serve."""
    folder = Path(folder) if folder is not None else process_dir() / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - OUTPUT_SECONDS
    for old in folder.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    Image.fromarray(picture).save(path, **({"quality": 90} if suffix == ".jpg" else {}))
    return str(path)


class SessionFiles:
    """What each visitor session has on the server's disk: the uploads it sent (in Gradio's cache, this process's
    folder) and a folder of its result pictures; ``release`` deletes both when the session ends.

    Uploads are content-addressed (ROOT/HASH/NAME), so two sessions that send the same bytes share a file: it goes
    with the last session that claimed it; copies of the bundled sample, which every page shows, are nobody's.
    Only files in that layout under ``root`` are ever claimed, never another server path a request names. A session
    idle for ``idle_seconds`` (an API caller that never closes a page) is released at the next claim."""

    def __init__(self, root: str | Path | None = None, idle_seconds: float = SESSION_SECONDS,
                 shared: Callable[[Path], bool] = is_copy_of_sample):
        self.root = Path(os.path.realpath(root or process_dir()))
        self.idle_seconds, self.shared = idle_seconds, shared
        self._uploads: dict[str | None, set[Path]] = {}
        self._folders: dict[str | None, Path] = {}
        self._last_used: dict[str | None, float] = {}
        self._lock = threading.Lock()

    def is_upload(self, path: str | Path) -> bool:
        """Whether ``path`` is where Gradio puts an upload (ROOT/HASH/NAME), not a file of the demo or the server."""
        path = Path(os.path.realpath(path))
        return path.parent.parent == self.root and re.fullmatch(r"[0-9a-f]{16,}", path.parent.name) is not None

    def claim(self, session: str | None, paths) -> None:
        """Count the uploads in ``paths`` (file paths as handlers get them) as this session's."""
        self.release_idle()
        uploads = {Path(os.path.realpath(p)) for p in paths if p and self.is_upload(p) and not self.shared(Path(p))}
        with self._lock:
            self._last_used[session] = time.monotonic()
            self._uploads.setdefault(session, set()).update(uploads)

    def folder(self, session: str | None) -> Path:
        """This session's folder for result pictures (created on first use)."""
        self.release_idle()
        with self._lock:
            self._last_used[session] = time.monotonic()
            if session not in self._folders or not self._folders[session].is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                self._folders[session] = Path(tempfile.mkdtemp(prefix="session-", dir=self.root))
            return self._folders[session]

    def release(self, session: str | None) -> None:
        """Delete the session's pictures and every upload no other session still claims."""
        with self._lock:
            uploads = self._uploads.pop(session, set())
            folder = self._folders.pop(session, None)
            self._last_used.pop(session, None)
            uploads -= set().union(*self._uploads.values())
        for path in uploads:
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()  # the hash folder, once empty
            except OSError:
                pass
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def release_idle(self) -> None:
        cutoff = time.monotonic() - self.idle_seconds
        with self._lock:
            idle = [session for session, used in self._last_used.items() if used < cutoff]
        for session in idle:
            self.release(session)


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # Ctrl-C; docker stop and systemd; a closed terminal


def install_stop_handlers(stop: Callable[[], None]) -> list[int]:
    """On SIGINT, SIGTERM or SIGHUP, run ``stop`` (close the server, delete every visitor file), then do what the
    signal did before: call the previous Python handler (Ctrl-C's KeyboardInterrupt, which Gradio answers by
    returning from ``launch``), or exit with status 0 where the signal would have killed the process without any
    clean-up. A signal that was ignored stays ignored, and one handled outside Python is left alone. Handlers can
    only be set from the main thread: elsewhere none is (the atexit hook still covers a normal exit). Returns the
    signals handled."""
    if threading.current_thread() is not threading.main_thread():
        return []
    handled = []
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        previous = signal.getsignal(signum) if signum is not None else None
        if previous is None or previous == signal.SIG_IGN:
            continue
        signal.signal(signum, partial(_on_stop_signal, stop=stop, previous=previous))
        handled.append(signum)
    return handled


def _on_stop_signal(signum, frame, stop: Callable[[], None], previous) -> None:
    try:
        stop()
    finally:
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL: the process would have ended here, only without cleaning up
            raise SystemExit(0)
