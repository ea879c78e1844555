"""The benchmark results a lesson quotes: ``benchmarks/results/<name>`` of a clone, else of the repository online.

In a clone the file is read from disk. On Colab, where only the package is installed, it is fetched once from the
repository at the lessons' ref (``raw.githubusercontent.com/<owner>/<name>/<ref>/benchmarks/results/<name>``), so a
cell prints the same table as in a clone. Unreachable or missing: ``None``, and the cell says where the file lives.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from ..errors import HLGFAError

RAW = "https://raw.githubusercontent.com/{repository}/{ref}/benchmarks/results/{name}"
TIMEOUT_SECONDS = 10
_FETCHED: dict[str, bytes | None] = {}  # url -> bytes, or None where it failed: one wait per file and kernel


def results_bytes(name: str, root: Path | None, repository: str, ref: str) -> bytes | None:
    """The bytes of ``benchmarks/results/<name>`` (e.g. ``"levels_tire.json"``) from the clone at ``root``, else
    from ``repository`` ("owner/name") at ``ref`` online; None when neither has it."""
    _check_name(name)
    if root is not None:
        path = Path(root) / "benchmarks" / "results" / name
        return path.read_bytes() if path.is_file() else None
    return _fetched(RAW.format(repository=repository, ref=ref, name=name))


def results_json(name: str, root: Path | None, repository: str, ref: str) -> dict:
    """``benchmarks/results/<name>.json``, parsed; {} when it cannot be had (see ``results_bytes``)."""
    _check_name(name)
    data = results_bytes(f"{name}.json", root, repository, ref)
    try:
        return json.loads(data) if data is not None else {}
    except ValueError:  # a proxy's error page, a truncated download: as good as none
        return {}


def _check_name(name) -> None:
    """A lesson names a file inside benchmarks/results; nothing else of the clone or the machine is read."""
    if not isinstance(name, str) or not name or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
        raise HLGFAError(f"a results name is a path inside benchmarks/results, like 'levels_tire.json'; got {name!r}.")


def _fetched(url: str) -> bytes | None:
    if url not in _FETCHED:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - a fixed https URL
                _FETCHED[url] = response.read()
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):  # offline, 404, a bad name
            _FETCHED[url] = None
    return _FETCHED[url]
