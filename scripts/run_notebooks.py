"""Execute the lesson notebooks headless with nbclient, in this Python environment's kernel.

    python scripts/run_notebooks.py                 # full mode, outputs written back into notebooks/*.ipynb
                                                    #   (this is how the committed outputs are made)
    python scripts/run_notebooks.py --fast          # FAST mode (HLGFA_FAST=1, as CI): executed copies go to a
                                                    #   temporary folder, the committed notebooks stay untouched
    python scripts/run_notebooks.py --fast --out /tmp/nb 00 03    # only lessons 00 and 03, copies kept in /tmp/nb

Every notebook runs with its own folder (notebooks/) as working directory, so it finds the repository the way a
reader's Jupyter does. Any cell error stops that notebook and makes the exit status 1. A summary of the wall time
of each notebook is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
KERNEL_NAME = "hlgfa-lite-runner"


def lesson_notebooks(prefixes: list[str] | None = None) -> list[Path]:
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        found = [p for p in found if any(p.name.startswith(prefix) for prefix in prefixes)]
    return found


def this_python_kernel(folder: Path) -> KernelSpecManager:
    """A kernelspec that starts ipykernel with *this* interpreter (the venv), whatever else Jupyter has installed."""
    spec_dir = folder / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "hlgfa_lite runner", "language": "python"}))
    manager = KernelSpecManager()
    manager.kernel_dirs = [str(folder)]
    return manager


def execute(path: Path, fast: bool, out_path: Path | None = None, timeout: int = 900) -> float:
    """Run one notebook top to bottom; write the executed notebook to ``out_path`` (default: in place).

    Returns the wall time in seconds; raises nbclient's CellExecutionError / CellTimeoutError on failure."""
    notebook = nbformat.read(path, as_version=4)
    env_before = os.environ.copy()
    os.environ["HLGFA_FAST"] = "1" if fast else "0"
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    with tempfile.TemporaryDirectory() as kernels:
        kernel_manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=this_python_kernel(Path(kernels)))
        client = NotebookClient(notebook, km=kernel_manager, timeout=timeout, allow_errors=False,
                                record_timing=False, store_widget_state=True,
                                resources={"metadata": {"path": str(path.parent)}})
        started = time.perf_counter()
        try:
            client.execute()
        finally:
            # nbclient leaves a kernel it was handed running (it only stops kernels it started itself): stop it,
            # or each finished lesson keeps a busy Python process alive
            if kernel_manager.has_kernel:
                kernel_manager.shutdown_kernel(now=True)
            os.environ.clear()
            os.environ.update(env_before)
    seconds = time.perf_counter() - started
    if not _has_widget_state(notebook):  # an empty widget-state block makes GitHub refuse to render the notebook
        notebook.metadata.pop("widgets", None)
    add_static_views(notebook)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(notebook, out_path or path)
    return seconds


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CONTROLS_ONLY = "(interactive controls: run the notebook to use them)"
FIGURE_SHOWN = "(the figure as first drawn; run the notebook to use its controls)"


def add_static_views(notebook) -> None:
    """Give each stored widget a view that readers without a kernel see. GitHub and other static viewers draw no
    widget: they fell back on the widget's text, "interactive(children=(Dropdown(...". Each widget's output now
    carries, beside the widget itself, the first picture its controls drew in this run (from the saved widget
    state), and a sentence in place of that text. Jupyter with widgets still draws the live widget."""
    state = notebook.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            picture = _first_picture(view.get("model_id"), state)
            output["data"]["text/plain"] = CONTROLS_ONLY if picture is None else FIGURE_SHOWN
            output["data"].update(picture or {})


def _first_picture(model_id: str | None, state: dict, seen: frozenset = frozenset()) -> dict | None:
    """{mime: data} of the first image a widget's Output descendants hold, or None."""
    model = state.get(model_id)
    if model is None or model_id in seen:
        return None
    for output in model["state"].get("outputs", []) if model.get("model_name") == "OutputModel" else []:
        pictures = {k: v for k, v in output.get("data", {}).items() if k in ("image/png", "image/jpeg")}
        if pictures:
            return pictures
    for child in model["state"].get("children", []):
        found = _first_picture(str(child).removeprefix("IPY_MODEL_"), state, seen | {model_id})
        if found is not None:
            return found
    return None


def _has_widget_state(notebook) -> bool:
    state = notebook.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return bool(state.get("state"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lessons", nargs="*", help="lesson number prefixes to run (default: all)")
    parser.add_argument("--fast", action="store_true", help="HLGFA_FAST=1; executed copies go to --out, not in place")
    parser.add_argument("--out", default=None, help="folder for executed copies (fast mode default: a temp folder)")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default 900, fast 300)")
    args = parser.parse_args(argv)
    notebooks = lesson_notebooks(args.lessons)
    if not notebooks:
        print(f"no lesson notebooks match {args.lessons} in {NOTEBOOKS}", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="hlgfa-notebooks-")) if args.fast else None)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    timeout = args.timeout or (300 if args.fast else 900)
    mode = "FAST" if args.fast else "full"
    times, failed = {}, []
    for path in notebooks:
        target = out_dir / path.name if out_dir else path
        print(f"[{mode}] {path.name} ...", flush=True)
        try:
            times[path.name] = execute(path, args.fast, target, timeout)
            print(f"[{mode}] {path.name}: ok in {times[path.name]:.0f} s -> {target}", flush=True)
        except (CellExecutionError, CellTimeoutError) as exc:
            failed.append(path.name)
            print(f"[{mode}] {path.name}: FAILED\n{exc}", file=sys.stderr, flush=True)
    print(f"\n{mode} mode summary (wall time per notebook):")
    for name, seconds in times.items():
        print(f"  {name:<28}{seconds:7.0f} s")
    for name in failed:
        print(f"  {name:<28} FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
