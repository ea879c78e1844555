"""Turn a benchmark results JSON (benchmarks/run.py) into Markdown tables and a plot, so RESULTS.md can be rebuilt.

    python -m benchmarks.render benchmarks/results/NAME.json                 # Markdown on stdout
    python -m benchmarks.render benchmarks/results/NAME.json --md X.md --png X.png
    python -m benchmarks.render A.json B.json --md X.md     # runs of several commands pooled (e.g. seed 0, seeds 1 2)

With several seeds every cell is mean ± sample standard deviation (n - 1) over the seeds, and the effect of each
variant is also given as its per-seed difference from the full model (paired by seed, so the spread is that of the
effect itself, not of the two variants' scores).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
from pathlib import Path

from benchmarks.harness import save_figure
from hlgfa_lite.tools.files import write_text

# (key in each run, column title, kind): kind "percent" prints x100, one decimal
MAIN_COLUMNS = [
    ("image_auroc", "image AUROC %", "percent"),
    ("pixel_auroc", "pixel AUROC %", "percent"),
    ("pixel_aupro", "pixel AUPRO %", "percent"),
    ("image_f1_max", "image F1-max %", "percent"),
    ("fit_seconds", "fit s", "seconds"),
    ("ms_per_image", "ms / image", "ms"),
    ("peak_rss_mb", "peak RSS MiB", "mib"),
    ("rss_growth_mb", "of which fit + eval MiB", "mib"),
    ("trainable_parameters", "trainable params", "count"),
    ("state_bytes", "stored state", "bytes"),
]
PLOT_METRICS = [("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pixel_aupro", "pixel AUPRO"),
                ("image_f1_max", "image F1-max")]


def stats(values: list) -> tuple[float, float, int] | None:
    """(mean, sample std (0 for one value), n) of the non-missing values; None if there are none."""
    values = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def summarise(runs: list[dict]) -> dict[str, dict[str, tuple | None]]:
    """{variant: {key: stats}} over seeds, variants in the order they were run."""
    variants = list(dict.fromkeys(run["variant"] for run in runs))
    keys = [k for k, _, _ in MAIN_COLUMNS] + ["fpr_good", "tpr_defect"]
    return {v: {k: stats([value(r, k) for r in runs if r["variant"] == v]) for k in keys} for v in variants}


def value(run: dict, key: str):
    """A run's number; ``rss_growth_mb`` is derived: peak RSS minus RSS after imports and model construction."""
    if key == "rss_growth_mb":
        peak, setup = run.get("peak_rss_mb"), run.get("setup_rss_mb")
        return None if peak is None or setup is None else peak - setup
    return run.get(key)


def robustness_summary(runs: list[dict]) -> dict[str, dict[str, dict[str, tuple | None]]]:
    """{variant: {nuisance: {"image_auroc" | "fpr_good" | ...: stats}}} for the variants that have it."""
    out: dict = {}
    for run in runs:
        for nuisance, values in (run.get("robustness") or {}).items():
            cell = out.setdefault(run["variant"], {}).setdefault(nuisance, {})
            for key, value in values.items():
                cell.setdefault(key, []).append(value)
    return {v: {n: {k: stats(vals) for k, vals in cell.items()} for n, cell in by_n.items()} for v, by_n in out.items()}


def paired_effects(runs: list[dict], keys: tuple[str, ...] = ("image_auroc", "pixel_auroc", "pixel_aupro"),
                   reference: str = "full") -> dict[str, dict[str, tuple | None]]:
    """{variant: {key: stats of (variant - reference) over the seeds where both ran}}, every variant but the
    reference."""
    by_seed = {r["seed"]: r for r in runs if r["variant"] == reference}
    variants = [v for v in dict.fromkeys(r["variant"] for r in runs) if v != reference]
    return {v: {k: stats([value(r, k) - value(by_seed[r["seed"]], k) for r in runs
                          if r["variant"] == v and r["seed"] in by_seed
                          and value(r, k) is not None and value(by_seed[r["seed"]], k) is not None])
                for k in keys} for v in variants}


def merge(parts: list[dict]) -> dict:
    """Results of several commands over the same datasets (say ``--seeds 0``, then ``--seeds 1 2``) as one: the runs
    of each dataset pooled, the seeds and commands listed together."""
    if len(parts) == 1:
        return parts[0]
    merged = copy.deepcopy(parts[0])
    merged["command"] = " ; ".join(p.get("command", "?") for p in parts)
    merged["complete"] = all(p.get("complete") for p in parts)
    merged["total_seconds"] = sum(p.get("total_seconds", 0) for p in parts)
    settings = merged.setdefault("settings", {})
    settings["seeds"] = sorted({s for p in parts for s in p.get("settings", {}).get("seeds", [])})
    for part in parts[1:]:
        settings.setdefault("variant_labels", {}).update(part.get("settings", {}).get("variant_labels", {}))
        settings.setdefault("nuisances", {}).update(part.get("settings", {}).get("nuisances", {}))
        for name, dataset in part.get("datasets", {}).items():
            pooled = merged["datasets"].setdefault(name, {**dataset, "runs": []})
            pooled["runs"] += copy.deepcopy(dataset.get("runs", []))
    if parts[-1].get("machine", {}).get("load_average_at_end"):
        merged["machine"]["load_average_at_end"] = parts[-1]["machine"]["load_average_at_end"]
    return merged


def human_bytes(n: float) -> str:
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def cell(stat: tuple | None, kind: str) -> str:
    if stat is None:
        return "—"
    mean, std, n = stat
    if kind == "percent":
        text, spread = f"{100 * mean:.1f}", f"{100 * std:.1f}"
    elif kind in ("bytes", "count"):  # sizes: the same for every seed, so no spread unless there is one
        show = human_bytes if kind == "bytes" else "{:,.0f}".format
        return f"{show(mean)} ± {show(std)}" if n > 1 and std > 0 else show(mean)
    elif kind == "fraction":
        text, spread = f"{mean:.2f}", f"{std:.2f}"
    elif kind == "points":  # a difference of two fractions, in percentage points, with its sign
        text, spread = f"{100 * mean:+.1f}", f"{100 * std:.1f}"
    else:  # seconds, ms, MiB
        text, spread = f"{mean:.0f}", f"{std:.0f}"
    return f"{text} ± {spread}" if n > 1 else text


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def labels_of(results: dict) -> dict[str, str]:
    return results.get("settings", {}).get("variant_labels", {})


def cost_line(summary: dict, labels: dict) -> str | None:
    """The two cost claims, measured: inference time per image and stored state, full HLGFA-lite vs PatchCore."""
    full, bank = summary.get("full"), summary.get("patchcore")
    if not full or not bank or not full["ms_per_image"] or not bank["ms_per_image"]:
        return None
    ms_full, ms_bank = full["ms_per_image"][0], bank["ms_per_image"][0]
    bytes_full, bytes_bank = full["state_bytes"][0], bank["state_bytes"][0]
    faster = "faster" if ms_full < ms_bank else "slower"
    smaller = "smaller" if bytes_full < bytes_bank else "larger"
    speed = max(ms_full, ms_bank) / min(ms_full, ms_bank)
    size = max(bytes_full, bytes_bank) / min(bytes_full, bytes_bank)
    return (f"**Cost, {labels.get('full', 'full')} vs {labels.get('patchcore', 'patchcore')}:** inference "
            f"{ms_full:.0f} vs {ms_bank:.0f} ms per image (batch 1, median: HLGFA-lite {speed:.2f}× {faster}); "
            f"stored state {human_bytes(bytes_full)} checkpoint vs {human_bytes(bytes_bank)} memory bank "
            f"(HLGFA-lite {size:.1f}× {smaller}).")


def run_header(results: dict) -> list[str]:
    """The title, the command(s), the machine and the run's settings."""
    machine, settings = results.get("machine", {}), results.get("settings", {})
    lines = ["# Benchmark results", ""]
    commands = results.get("command", "?").split(" ; ")
    lines.append(("Command: " if len(commands) == 1 else "Commands (runs pooled): ")
                 + "; ".join(f"`{c}`" for c in commands))
    lines.append("")
    load = ""
    if machine.get("load_average_at_start"):
        load = f"; load average {'/'.join(map(str, machine['load_average_at_start']))} at start"
        if machine.get("load_average_at_end"):
            load += f", {'/'.join(map(str, machine['load_average_at_end']))} at end"
    device = machine.get("device", "?") + (f" ({machine['gpu']})" if machine.get("gpu") else "")
    threads = machine.get("torch_threads", "?")
    lines.append(f"Machine: {machine.get('cpu', '?')}, {machine.get('usable_cores', '?')} usable cores "
                 f"({threads} torch thread{'' if threads == 1 else 's'} per variant), device {device}; Python "
                 f"{machine.get('python', '?')}, torch {machine.get('torch', '?')}, timm {machine.get('timm', '?')}, "
                 f"hlgfa_lite {machine.get('hlgfa_lite', '?')}{load}.")
    lines.append("")
    minutes = results.get("total_seconds", 0) / 60
    state = "complete" if results.get("complete") else "**incomplete** (interrupted or still running)"
    overrides = ", ".join(f"{k} {v}" for k, v in settings.get("config_overrides", {}).items()) or "none"
    lines.append(f"Run: {state}, {minutes:.1f} min in total (fits, evaluations and robustness, every variant in its "
                 f"own process: {settings.get('isolation', '?')}). Preset `{settings.get('preset', '?')}` "
                 f"(overrides: {overrides}); seeds {settings.get('seeds', '?')}; PatchCore coreset "
                 f"{settings.get('coreset', '?')} {100 * settings.get('coreset_fraction', 0):.0f} %.")
    return lines


def quality_tables(runs: list[dict], labels: dict) -> list[str]:
    """Every variant's numbers, its cost against the memory bank, its paired effect and its per-type AUROC."""
    summary = summarise(runs)
    lines = [""]
    rows = [[labels.get(v, v)] + [cell(s[key], kind) for key, _, kind in MAIN_COLUMNS]
            for v, s in summary.items()]
    lines += table(["variant"] + [title for _, title, _ in MAIN_COLUMNS], rows)
    lines.append("")
    lines.append("Fit s: wall time of fitting (feature caching, training, calibration; the memory bank and its "
                 "coreset), model construction excluded. ms / image: median over the test set, batch 1, after "
                 "warm-up, the model call only. Peak RSS: high-water mark of the variant's own process "
                 "(`VmHWM`), Python, torch and the backbone included (— when variants share a process); of "
                 "which fit + eval: that peak minus the process's peak before fitting (imports, data listing, "
                 "model built). "
                 "Stored state: what the method keeps besides the frozen backbone.")
    cost = cost_line(summary, labels)
    if cost:
        lines += ["", cost]
    effects = paired_effects(runs)
    if "full" in summary and effects:
        lines += ["", "### Each variant against the full model (percentage points, paired by seed)", "",
                  "Variant minus full HLGFA-lite with the same seed, mean ± std over the seeds where both ran "
                  "(n): an effect smaller than its spread is not established.", ""]
        keys = [("image_auroc", "Δ image AUROC"), ("pixel_auroc", "Δ pixel AUROC"), ("pixel_aupro", "Δ AUPRO")]
        rows = [[labels.get(v, v), str(max((s[2] for s in e.values() if s), default=0))]
                + [cell(e[k], "points") for k, _ in keys] for v, e in effects.items()]
        lines += table(["variant", "n"] + [title for _, title in keys], rows)
    types = list(dict.fromkeys(t for r in runs for t in r.get("per_type", {})))
    if types:
        lines += ["", "### Image AUROC per defect type (%)", ""]
        rows = [[labels.get(v, v)] + [cell(stats([r["per_type"].get(t) for r in runs if r["variant"] == v]),
                                           "percent") for t in types] for v in summary]
        lines += table(["variant"] + types, rows)
    return lines


def robustness_table(runs: list[dict], dataset: dict, settings: dict, labels: dict) -> list[str]:
    """Image AUROC, FPR and TPR of each robustness variant under each nuisance; nothing if none was measured."""
    robust = robustness_summary(runs)
    if not robust:
        return []
    nuisances = settings.get("nuisances", {})
    size = settings.get("config_overrides", {}).get("hr_size") or next(
        (r["config"]["hr_size"] for r in runs if r.get("config")), "?")
    n_good = dataset.get("n_test_images", 0) - dataset.get("n_test_defective", 0)
    lines = ["", "### Nuisance robustness", "",
             f"Each nuisance is applied at a fixed strength to every test image after resizing it to "
             f"{size} px (so both views see it, as with a real camera). FPR: share of the {n_good} good "
             f"test images flagged at the threshold calibrated on clean held-out good images; TPR: share of "
             f"defective images flagged.", ""]
    header = ["nuisance"]
    for v in robust:
        header += [f"{labels.get(v, v)}: image AUROC %", "FPR good", "TPR defect"]
    rows = []
    for nuisance in ["clean"] + [n for n in nuisances if any(n in by_n for by_n in robust.values())]:
        row = [nuisances.get(nuisance, {}).get("label", nuisance)]
        for v, by_n in robust.items():
            values = by_n.get(nuisance, {})
            row += [cell(values.get("image_auroc"), "percent"), cell(values.get("fpr_good"), "fraction"),
                    cell(values.get("tpr_defect"), "fraction")]
        rows.append(row)
    return lines + table(header, rows)


def markdown(results: dict) -> str:
    labels = labels_of(results)
    lines = run_header(results)
    for name, dataset in results.get("datasets", {}).items():
        runs = dataset.get("runs", [])
        lines += ["", f"## {name}", ""]
        holdout = next((r["n_holdout"] for r in runs if r.get("n_holdout")), None)
        lines.append(f"`{dataset.get('path', '?')}`: {dataset.get('n_train_images', '?')} good training images"
                     + (f" ({holdout} held out for calibration)" if holdout else "")
                     + f", {dataset.get('n_test_images', '?')} test images ({dataset.get('n_test_defective', '?')} "
                     f"defective: {', '.join(dataset.get('defect_types', []))}).")
        if not runs:
            lines += ["", "No variant finished yet."]
            continue
        lines += quality_tables(runs, labels)
        lines += robustness_table(runs, dataset, results.get("settings", {}), labels)
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: Path) -> None:
    """NAME.json, NAME.md (the tables) and NAME.png (the plot, once a variant has finished), each replaced whole."""
    write_text(out, json.dumps(results, indent=1) + "\n")
    write_text(out.with_suffix(".md"), markdown(results))
    if any(dataset["runs"] for dataset in results["datasets"].values()):
        plot(results, out.with_suffix(".png"))


def plot(results: dict, path: str | Path) -> Path:
    """One row per dataset: the quality metrics of every variant; then, if measured, image AUROC and the
    false-positive rate on good images under each nuisance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = labels_of(results)
    datasets = [(name, ds) for name, ds in results.get("datasets", {}).items() if ds.get("runs")]
    if not datasets:
        raise ValueError("no finished runs to plot")
    fig, axes = plt.subplots(len(datasets), 3, figsize=(18, 5.2 * len(datasets)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2, 2]})

    def bars(ax, groups: list[str], series: list[tuple[str, list[float], list[float]]]):
        width = 0.8 / len(series)
        for i, (name, means, stds) in enumerate(series):
            ax.bar(np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width, means, width, yerr=stds,
                   capsize=2, label=name)
        ax.set_xticks(np.arange(len(groups)), groups, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("%")
        ax.grid(axis="y", alpha=0.3)

    def mean_std(stat) -> tuple[float, float]:
        return (100 * stat[0], 100 * stat[1]) if stat else (math.nan, 0.0)

    for row, (name, dataset) in enumerate(datasets):
        summary = summarise(dataset["runs"])
        variants = list(summary)
        series = [(title, *zip(*(mean_std(summary[v][key]) for v in variants))) for key, title in PLOT_METRICS]
        bars(axes[row][0], [labels.get(v, v) for v in variants], series)
        lowest = min([100.0] + [m for _, means, _ in series for m in means if not math.isnan(m)])
        axes[row][0].set_ylim(max(0, math.floor(lowest / 10) * 10 - 10), 100.5)
        axes[row][0].set_title(f"{name}: quality per variant", fontsize=10)
        axes[row][0].legend(fontsize=8, loc="lower left")
        robust = robustness_summary(dataset["runs"])
        if not robust:
            axes[row][1].axis("off")
            axes[row][2].axis("off")
            continue
        nuisances = ["clean"] + list(results.get("settings", {}).get("nuisances", {}))
        for ax, key, title in ((axes[row][1], "image_auroc", "image AUROC under nuisances"),
                               (axes[row][2], "fpr_good", "good images flagged (FPR) at the calibrated threshold")):
            series = [(labels.get(v, v), *zip(*(mean_std(by_n.get(n, {}).get(key)) for n in nuisances)))
                      for v, by_n in robust.items()]
            bars(ax, nuisances, series)
            ax.set_ylim(0, 105)
            ax.set_title(f"{name}: {title}", fontsize=10)
        axes[row][2].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    seeds = results.get("settings", {}).get("seeds", [])
    fig.suptitle("mean ± std over seeds " + str(seeds) if len(seeds) > 1 else f"seed {seeds}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.render", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="JSON(s) written by benchmarks/run.py; several are pooled")
    parser.add_argument("--md", default=None, help="write the Markdown here (default: stdout)")
    parser.add_argument("--png", default=None, help="also draw the plot here")
    args = parser.parse_args(argv)
    parts = []
    for path in args.results:
        try:
            part = json.loads(Path(path).read_text())
            if not isinstance(part, dict) or "datasets" not in part:
                raise ValueError("no 'datasets' key")
        except (OSError, ValueError) as exc:
            print(f"error: {path} is not a benchmark results JSON ({exc}).", file=sys.stderr)
            return 2
        parts.append(part)
    results = merge(parts)
    text = markdown(results)
    if args.md:
        write_text(args.md, text)
    else:
        print(text, end="")
    if args.png:
        try:
            plot(results, args.png)
        except ValueError as exc:
            print(f"error: cannot draw {args.png}: {exc}.", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
