"""What the benchmark scripts share: a measurement in a fresh interpreter, outputs written whole or not at all, one
line and an exit code for every way a run can end, and the facts a results file records about machine and data.

A script built on it has ``main(argv) -> int`` that returns ``exit_code(body, args)``; a script that runs its
measurements isolated calls ``run_in_fresh_process("benchmarks.NAME", spec, ...)``, and answers
``serve_worker(argv, measure)`` when its argv starts with ``WORKER_FLAG``.
"""

from __future__ import annotations

import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from hlgfa_lite import HLGFAError, __version__
from hlgfa_lite.tools.files import write_bytes

ROOT = Path(__file__).resolve().parents[1]  # the repository: where ``python -m benchmarks.X`` finds this package
RESULTS = ROOT / "benchmarks" / "results"
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
WORKER_FLAG = "--_worker"  # internal: the child's argv starts with it, then the spec and the result file


class RunFailed(Exception):
    """A measurement's process died without a result: a bug or an out-of-memory kill, not a user mistake."""


# --- outputs: written whole or not at all (text and JSON: hlgfa_lite.tools.files) ---------------------------------------
def save_figure(figure, path: str | os.PathLike, **savefig_options) -> Path:
    """A matplotlib figure into ``path`` (format from its suffix), replacing any previous file in one rename."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", **savefig_options)
    return write_bytes(path, buffer.getvalue())


def save_tensors(data, path: str | os.PathLike) -> Path:
    """``torch.save(data)`` into ``path``, replacing any previous file in one rename."""
    import torch

    buffer = io.BytesIO()
    torch.save(data, buffer)
    return write_bytes(path, buffer.getvalue())


# --- one measurement in a fresh interpreter ------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux, ``VmHWM`` of /proc/self/status: the high-water mark of this process's own memory. Not ``ru_maxrss``:
    Linux carries a parent's peak across fork + exec into the child's ``ru_maxrss``, so a child would start at the
    orchestrating parent's peak (measured: 812 MiB for a child holding 11 MiB). Elsewhere ``ru_maxrss`` is the best
    there is (macOS reports bytes, Linux KiB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def child_environment(threads: int | None = None, **extra: str) -> dict[str, str]:
    """This process's environment, with the repository first on PYTHONPATH (``-m benchmarks.X`` from any folder) and
    the thread count set where OpenMP and MKL read it at start-up."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, **extra}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_in_fresh_process(module: str, spec: dict, threads: int, what: str, python: str = sys.executable,
                         **environment: str) -> dict:
    """``python -m module WORKER_FLAG spec result`` and its result, so that the child's memory high-water mark and
    caches are the measurement's alone. ``what`` names it in the error when the child dies without a result; an
    ``HLGFAError`` the child caught comes back as one. ``python``: another interpreter (e.g. anomalib's venv);
    ``environment``: more variables for the child."""
    with tempfile.TemporaryDirectory() as folder:
        spec_path, result_path = Path(folder) / "spec.json", Path(folder) / "result.json"
        spec_path.write_text(json.dumps(spec))
        done = subprocess.run([python, "-m", module, WORKER_FLAG, str(spec_path), str(result_path)],
                              env=child_environment(threads, **environment))
        if not result_path.is_file():
            raise RunFailed(f"{what} failed with exit code {done.returncode}; its traceback is above.")
        result = json.loads(result_path.read_text())
    if "error" in result:
        raise HLGFAError(result["error"])
    return result


def serve_worker(argv: list[str], measure: Callable[[dict], dict]) -> int:
    """The child's side: read the spec, measure, write the result (or the user-facing error) as JSON."""
    spec_path, result_path = map(Path, argv[:2])
    try:
        result = measure(json.loads(spec_path.read_text()))
    except HLGFAError as exc:
        result = {"error": str(exc)}
    result_path.write_text(json.dumps(result))
    return 0


def exit_code(body: Callable[..., object], *args) -> int:
    """``body(*args)``'s exit code (its result if that is an int, else 0); what the user can fix ends in one line and
    exit code 2, a dead measurement in 1, Ctrl-C in 130 (the outputs written so far stay)."""
    try:
        result = body(*args)
        return result if isinstance(result, int) else 0
    except HLGFAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; the measurements finished so far are in the output files.", file=sys.stderr)
        return EXIT_INTERRUPTED


# --- what a results file records -----------------------------------------------------------------------------------
def check_dataset(folder: str) -> dict:
    """One clear error for a folder that cannot be benchmarked; else its sizes."""
    from hlgfa_lite.data import load_test_split, train_image_paths

    root = Path(folder)
    if not root.is_dir():
        raise HLGFAError(f"{root} is not a folder; give an MVTec-layout category folder (train/good, test/<type>, "
                         "ground_truth/<type>).")
    if not (root / "train" / "good").is_dir():
        raise HLGFAError(f"{root} is not MVTec layout: it has no train/good folder (expected train/good, "
                         "test/good, test/<defect type>, ground_truth/<defect type>/<name>_mask.png).")
    paths, samples = train_image_paths(root), load_test_split(root, require_defects=True)
    return {"path": str(root.resolve()), "n_train_images": len(paths), "n_test_images": len(samples),
            "n_test_defective": sum(s.label for s in samples),
            "defect_types": sorted({s.defect_type for s in samples} - {"good"})}


def dataset_names(folders: list[str]) -> list[str]:
    """Folder names as keys; a repeated name gets -2, -3 ..."""
    names: list[str] = []
    for folder in folders:
        name = Path(folder).resolve().name
        candidate, n = name, 2
        while candidate in names:
            candidate, n = f"{name}-{n}", n + 1
        names.append(candidate)
    return names


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_features(wanted: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")) -> list[str]:
    """The vector instruction sets among ``wanted`` that this CPU reports (the head trains in bfloat16 only with
    avx512_bf16 or amx_bf16; without them it trains in float32, at more than twice the time of a step: RESULTS.md,
    "A ninth day, on a CPU without bfloat16")."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    present = set(flags.split(":", 1)[1].split())
    return [flag for flag in wanted if flag in present]


def machine_info(device: str, threads: int) -> dict:
    import timm
    import torch

    from hlgfa_lite.device import has_fast_bfloat16, usable_cpus

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_model(),
            # "AMD EPYC" names several generations: these say which one (bfloat16 in hardware or not)
            "cpu_features": cpu_features(), "cpu_bfloat16": has_fast_bfloat16(torch.device("cpu")),
            "logical_cores": os.cpu_count(), "usable_cores": usable_cpus(), "torch_threads": threads,
            "torch": torch.__version__, "timm": timm.__version__, "hlgfa_lite": __version__, "device": device,
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None}
    if hasattr(os, "getloadavg"):  # a busy machine slows every timing: say how busy it was
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def one_line(result: dict) -> str:
    return (f"image AUROC {result['image_auroc']:.3f}, pixel AUROC {result['pixel_auroc']:.3f}, "
            f"AUPRO {result['pixel_aupro']:.3f}, fit {result['fit_seconds']:.0f} s, "
            f"{result['ms_per_image']:.0f} ms/image"
            + (f", peak {result['peak_rss_mb']:.0f} MiB" if result.get("peak_rss_mb") else ""))
