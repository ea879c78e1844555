"""Wall time of ``fit`` and its phases, for one or more checkouts of hlgfa_lite, run alternately.

Each repeat fits once per checkout, each fit in a fresh interpreter with that checkout first on ``sys.path``, so
a machine whose speed drifts slows every checkout alike; read the medians side by side. The fit is the library's
own ``fit`` (what ``hlgfa-lite fit`` runs), on the training images of DATA, with the ``lite`` preset.

    HF_HUB_OFFLINE=1 python -m benchmarks.fit_speed ../shared/data/mvtec_bottle/bottle            # this checkout
    git worktree add /tmp/before HEAD~1                                                              # a change's cost
    HF_HUB_OFFLINE=1 python -m benchmarks.fit_speed ../shared/data/mvtec_bottle/bottle --steps 100 \\
        --checkouts /tmp/before . --repeats 2

Printed per fit: total seconds (images read, features held, head trained, calibrated), the feature phase, the
head's milliseconds per step, the cross-fitted heads' seconds (small sets only), the last loss and the image
threshold (a changed loss or threshold means the change changed the arithmetic).

``--anomalib PYTHON`` times instead, on each folder one after another, the whole ``hlgfa-lite fit DATA --preset
lite --seed 0`` command and anomalib 2.7's PaDiM and PatchCore fits (``benchmarks.anomalib_peers``' own code, run
by PYTHON, the interpreter of anomalib's virtual environment, with the same threads), each in a fresh process, and
writes the seconds and the ratios to OUT (JSON) and OUT's ``.md`` twin:

    HF_HUB_OFFLINE=1 python -m benchmarks.fit_speed ../shared/data/mvtec_bottle/bottle ../shared/data/mvtec3d_tire/tire \
        ../shared/data/magnetic_tile --anomalib /work/venv-anomalib/bin/python --out benchmarks/results/fit_speed_peers.json

Seconds are wall time of each whole process (start-up, imports and image reading included), and each fit's own
phase as it reports it: HLGFA-lite's ``fit done in`` line (features, head, calibration), anomalib's reading of the
training images through ``fit()`` (no validation pass). PatchCore's coreset is fitted on at most 100 training
images, as in ``benchmarks.anomalib_peers``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import (RunFailed, check_dataset, child_environment, dataset_names, exit_code, machine_info,
                                run_in_fresh_process)
from hlgfa_lite.tools.files import write_json, write_text

PEERS = {"padim": "anomalib_padim", "patchcore": "anomalib_patchcore"}

ONE_FIT = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from hlgfa_lite import HLGFA, preset, train_image_paths
from hlgfa_lite.training import fit
started = time.perf_counter()
model = HLGFA(preset("lite", steps=int(sys.argv[2])))
report = fit(model, train_image_paths(sys.argv[1]), progress=False, say=None)
print(json.dumps({"total_s": time.perf_counter() - started, "features_s": report.cache_seconds,
                  "ms_per_step": 1000 * report.train_seconds / len(report.losses), "last_loss": report.losses[-1],
                  "cross_fit_s": report.cross_fit_seconds, "threshold": model.calibration.image_threshold,
                  "precision": report.precision}))
"""


def time_hlgfa_fit(data: str, threads: int) -> dict:
    """The whole ``hlgfa-lite fit`` command in a fresh process: wall seconds, and the phases it reports."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "hlgfa_lite.tools.cli", "fit", data, "--preset", "lite", "--seed", "0",
                   "--out", str(Path(folder) / "run"), "--quiet"]
        started = time.perf_counter()
        done = subprocess.run(command, env=child_environment(threads), capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode:
        raise RunFailed(f"hlgfa-lite fit failed on {data}:\n{done.stderr[-2000:]}")
    phases = re.search(r"fit done in (\d+) s \(features (\d+) s, head (\d+) s\)", done.stdout)
    steps = re.search(r"the head trains (\d+) steps.*?in (float32|bfloat16)", done.stdout)
    return {"process_s": wall, "fit_s": int(phases[1]), "features_s": int(phases[2]), "head_s": int(phases[3]),
            "head_steps": int(steps[1]), "head_precision": steps[2]}


def time_peer(python: str, data: str, name: str, model: str, threads: int, hf_home: str) -> dict:
    """One anomalib fit (no evaluation) in a fresh process of anomalib's interpreter."""
    spec = {"dataset": name, "path": data, "model": PEERS[model], "seed": 0, "threads": threads, "batch_size": 8,
            "padim_features": 100, "patchcore_images": 100, "hf_home": hf_home, "weights_file": "", "fit_only": True}
    started = time.perf_counter()
    result = run_in_fresh_process("benchmarks.anomalib_peers", spec, threads, f"anomalib {model} on {name}",
                                  python=python, MALLOC_ARENA_MAX="2", HF_HUB_OFFLINE="1")
    return {"process_s": time.perf_counter() - started, "fit_s": result["fit_seconds"], "n_train": result["n_train"]}


def peers_table(results: dict) -> str:
    lines = ["| data (training images) | HLGFA-lite fit command | anomalib PaDiM | anomalib PatchCore | "
             "HLGFA-lite / PaDiM |", "|---|---:|---:|---:|---:|"]
    for name, row in results["datasets"].items():
        ours, padim, patchcore = row["hlgfa_lite"], row.get("padim"), row.get("patchcore")
        cell = lambda r: f"{r['process_s']:.0f} s (fit {r['fit_s']:.0f} s)" if r else "–"  # noqa: E731
        ratio = f"{ours['process_s'] / padim['process_s']:.1f}x" if padim else "–"
        lines.append(f"| {name} ({row['n_images']}) | {ours['process_s']:.0f} s (fit {ours['fit_s']} s: features "
                     f"{ours['features_s']} s, head {ours['head_s']} s, {ours['head_steps']} steps) | {cell(padim)} | "
                     f"{cell(patchcore)} | {ratio} |")
    return "\n".join(lines) + "\n"


def side_by_side(args) -> None:
    from benchmarks.anomalib_peers import install_offline_weights

    hf_home = str(Path(tempfile.gettempdir()) / "hlgfa-anomalib-hf")
    install_offline_weights(Path(hf_home))
    out = Path(args.out)
    results = {"command": "python -m benchmarks.fit_speed " + " ".join(sys.argv[1:]),
               "machine": machine_info("cpu", args.threads), "datasets": {}}
    for name, data in zip(dataset_names(args.data), args.data):
        data = str(Path(data).resolve())
        row = results["datasets"][name] = {"n_images": check_dataset(data)["n_train_images"]}
        row["hlgfa_lite"] = time_hlgfa_fit(data, args.threads)
        print(f"{name}: hlgfa-lite {row['hlgfa_lite']}", flush=True)
        for model in args.peers:
            row[model] = time_peer(args.anomalib, data, name, model, args.threads, hf_home)
            print(f"{name}: {model} {row[model]}", flush=True)
        write_json(out, results)
    write_text(out.with_suffix(".md"), peers_table(results))
    print(peers_table(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fit_speed", description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="MVTec-layout category folder(s) (one for --checkouts)")
    parser.add_argument("--anomalib", metavar="PYTHON", help="time anomalib's PaDiM and PatchCore with this interpreter")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--out", help="results JSON for --anomalib")
    parser.add_argument("--checkouts", nargs="+", default=[str(Path(__file__).resolve().parents[1])],
                        help="repository roots to compare (default: this one)")
    parser.add_argument("--steps", type=int, default=500, help="head steps (default: the lite preset's 500)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.anomalib:
        if not args.out:
            parser.error("--anomalib needs --out")
        return exit_code(side_by_side, args)
    results: dict[str, list[dict]] = {checkout: [] for checkout in args.checkouts}
    data = str(Path(args.data[0]).resolve())  # each fit runs inside its checkout
    for repeat in range(args.repeats):
        for checkout in args.checkouts:
            root = Path(checkout).resolve()
            # run inside the checkout: ``python -c`` puts the working folder first on the path, before PYTHONPATH
            done = subprocess.run([sys.executable, "-c", ONE_FIT, data, str(args.steps), str(args.threads)],
                                  env={**os.environ, "PYTHONPATH": str(root)}, cwd=root, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"fit failed in {checkout}:\n{done.stderr[-2000:]}")
            results[checkout].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"repeat {repeat + 1}, {checkout}: {results[checkout][-1]}", flush=True)
    precisions = sorted({run.get("precision", "?") for runs in results.values() for run in runs})
    print(f"\n{args.steps} steps, {args.threads} torch threads, head in {' and '.join(precisions)}, medians of "
          f"{args.repeats} fit(s) each\n")
    print("| checkout | fit s | features s | head ms / step | cross-fitted heads s | last loss | threshold |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for checkout, runs in results.items():
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "precision"}
        print(f"| {checkout} | {median['total_s']:.1f} | {median['features_s']:.1f} | {median['ms_per_step']:.0f} | "
              f"{median['cross_fit_s']:.1f} | {median['last_loss']:.4f} | {median['threshold']:.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
