"""Every category of an MVTec AD root, fitted and evaluated in turn, resumable: ``hlgfa-lite mvtec ROOT --out OUT``.

For each ``ROOT/<category>`` with ``train/good`` and ``test``: fit a head (checkpoint in ``OUT/<category>/model``),
evaluate it, write ``OUT/<category>/metrics.json`` (atomically). ``OUT/results.md`` and ``OUT/results.json`` hold
the per-category table and its means next to the paper's (97.5 % image / 97.9 % pixel AUROC, the mean over all 15
categories).

**Every stored result says what made it** (``made_by``: preset, steps, seed, other config overrides, backbone
weights, the category folder resolved, a fingerprint of its file list, the package version), in ``metrics.json``,
``fit.json``, the checkpoint's ``fit`` record and the table. A run into an existing ``OUT`` (an interrupted Colab
runtime picking up where it stopped) reuses a category's metrics, or evaluates its checkpoint without refitting,
only when its record equals this run's: a table never holds another run's numbers. A record that differs stops the
run before any work, in one line naming the difference (``overwrite=True`` redoes those categories instead); a
record that is damaged (cut short, ``{}``, wrong types) or was not written by this runner is reported in one line
and redone.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import HLGFAError, named
from .files import write_json, write_text
from .folders import check_output_dir, exclusive

PAPER = {"image_auroc": 0.975, "pixel_auroc": 0.979}  # arXiv 2602.09524, abstract: mean over MVTec AD's 15 categories
MVTEC_CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
                    "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
COLUMNS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max")
PRODUCER = "hlgfa_lite mvtec"
# what ``made_by`` holds, and the JSON type of each field; every one must equal this run's for a result to be reused
RECORD_FIELDS = {"producer": str, "data": str, "data_files_sha256": str, "preset": str, "steps": int, "seed": int,
                 "overrides": dict, "pretrained": bool, "package_version": str}
DATA_PARTS = ("train", "test", "ground_truth")  # what a category's fit and metrics are made from


def categories(root: str | Path, only: Sequence[str] | None = None) -> list[Path]:
    """Sub-folders of ``root`` in the MVTec layout (train/good and test), sorted by name; of those, the ones named
    in ``only`` when it is given."""
    root = Path(root)
    if not root.is_dir():
        raise HLGFAError(f"{root} is not a folder; give the MVTec AD root (the folder holding bottle/, cable/, ...).")
    found = sorted(p for p in root.iterdir() if (p / "train" / "good").is_dir() and (p / "test").is_dir())
    if not found:
        inside = " (it is a category itself: give the folder that holds it)" if (root / "train" / "good").is_dir() else ""
        raise HLGFAError(f"{root} holds no category in the MVTec layout (<category>/train/good and "
                         f"<category>/test){inside}; give the folder that contains bottle/, cable/, ...")
    if only is None:
        return found
    wanted = list(only) if not isinstance(only, (str, bytes)) else None  # a generator is read once, here
    if not wanted or not all(isinstance(name, str) and name.strip() for name in wanted):
        raise HLGFAError(f"only must be a non-empty list of category names (strings), got {only!r}.")
    unknown = sorted(set(wanted) - {p.name for p in found})
    if unknown:
        why = (f" ({unknown[0]}/ lacks train/good or test)" if (root / unknown[0]).is_dir() else "")
        raise HLGFAError(f"{root} has no category {named(unknown)}{why}; it has "
                         f"{named([p.name for p in found], most=20)}.")
    return [p for p in found if p.name in set(wanted)]


# --- what made a result -----------------------------------------------------------------------------------------
def data_fingerprint(folder: Path) -> str:
    """SHA-256 of the sorted relative paths and sizes of a category's train, test and ground_truth files: images
    added, removed, renamed or replaced by a file of another size give another fingerprint."""
    entries = []
    for part in DATA_PARTS:
        base = folder / part
        if base.is_dir():
            entries += [(p.relative_to(folder).as_posix(), p.stat().st_size) for p in base.rglob("*") if p.is_file()]
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()


def made_by(folder: Path, preset_name: str, steps: int, seed: int, overrides: dict, pretrained: bool) -> dict:
    """The record every result of ``folder`` carries: everything that changes what a fit and its metrics are."""
    from .._version import __version__

    return {"producer": PRODUCER, "preset": preset_name, "steps": steps, "seed": seed,
            "overrides": json.loads(json.dumps(overrides, sort_keys=True)), "pretrained": pretrained,
            "data": str(folder.resolve()), "data_files_sha256": data_fingerprint(folder),
            "package_version": __version__}


def record_problem(record) -> str | None:
    """Why ``record`` is not a ``made_by`` this runner wrote (None when it is one)."""
    if not isinstance(record, dict):
        return "it has no made_by record (written by something else, or an older hlgfa_lite)"
    for name, kind in RECORD_FIELDS.items():
        value = record.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"its made_by.{name} is {value!r}, not a {kind.__name__}"
    if record["producer"] != PRODUCER:
        return f"it was made by {record['producer']!r}"
    return None


def difference(stored: dict, wanted: dict) -> str | None:
    """The first field in which two valid records differ, in words (None when they are equal)."""
    for name in RECORD_FIELDS:
        if stored[name] != wanted[name]:
            if name == "data_files_sha256":
                return f"the files under {wanted['data']} changed since (added, removed or resized)"
            return f"{name} {stored[name]!r}, this run {wanted[name]!r}"
    return None


def read_record(path: Path, metrics: bool) -> tuple[dict | None, str | None]:
    """(the stored JSON, None) or (None, why it cannot be used): missing, cut short, not an object, wrong types."""
    if not path.is_file():
        return None, "it is missing"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"it is not valid JSON: {str(exc)[:60]}"
    if not isinstance(data, dict):
        return None, "it does not hold a JSON object"
    problem = record_problem(data.get("made_by"))
    if problem:
        return None, problem
    numbers = COLUMNS if metrics else ("seconds",)
    for key in numbers:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"its {key} is {value!r}, not a number"
    return data, None


# --- one category -----------------------------------------------------------------------------------------------
@dataclass
class Step:
    """What a run does with one category: ``action`` "reuse" (its metrics), "evaluate" (its checkpoint) or "fit";
    ``note`` says why a stored result is not reused; ``conflict`` names how a stored record differs from this run's."""

    folder: Path
    target: Path
    record: dict
    action: str
    note: str = ""
    conflict: str = ""


def _checkpoint_record(run_dir: Path) -> tuple[dict | None, str | None]:
    from .checkpoint import METADATA, read_metadata

    if not (run_dir / METADATA).is_file():
        return None, "it is missing"
    try:
        stored = read_metadata(run_dir).get("fit")
    except HLGFAError as exc:
        return None, str(exc)
    problem = record_problem(stored.get("made_by") if isinstance(stored, dict) else None)
    return (None, problem) if problem else (stored["made_by"], None)


def plan_category(folder: Path, target: Path, record: dict) -> Step:
    """Decide, before any work, whether ``target`` holds a usable result of this very run for ``folder``."""
    metrics, why = read_record(target / "metrics.json", metrics=True)
    if metrics is not None:
        changed = difference(metrics["made_by"], record)
        if changed is None:
            return Step(folder, target, record, "reuse")
        return Step(folder, target, record, "fit", conflict=f"{target / 'metrics.json'} was made with {changed}")
    note = "" if why == "it is missing" else f"{target / 'metrics.json'} cannot be used ({why}): redoing it"
    if not (target / "model").exists():
        return Step(folder, target, record, "fit", note)
    stored, why_checkpoint = _checkpoint_record(target / "model")
    fitted, why_fitted = read_record(target / "fit.json", metrics=False)
    for made, where in ((stored, target / "model"), (fitted and fitted["made_by"], target / "fit.json")):
        changed = made and difference(made, record)
        if changed:  # another run's checkpoint: never replaced without --overwrite
            return Step(folder, target, record, "fit", note, f"{where} was fitted with {changed}")
    if stored is not None and fitted is not None:
        return Step(folder, target, record, "evaluate", note)
    problem = f"{target / 'model'}: {why_checkpoint}" if stored is None else f"{target / 'fit.json'}: {why_fitted}"
    return Step(folder, target, record, "fit", f"the checkpoint's record cannot be used ({problem}): refitting")


def run_category(step: Step, device: str, pretrained: bool, overrides: dict, say: Callable[[str], None],
                 max_cache_gib: float | None = None, cache_dir: str | None = None) -> dict:
    """Fit (unless ``step`` reuses the checkpoint) and evaluate one category; returns its metrics."""
    from .checkpoint import load, save
    from ..config import preset
    from ..data import train_image_paths
    from ..evaluation import evaluate
    from ..model import HLGFA
    from ..training import fit

    folder, out, record, run_dir = step.folder, step.target, step.record, step.target / "model"
    if step.action == "evaluate":
        say(f"{folder.name}: checkpoint found, made by this run's settings: evaluating it (no refit)")
        model = load(run_dir, device=device)
        fit_seconds = read_record(out / "fit.json", metrics=False)[0]["seconds"]
    else:
        for stale in ("metrics.json", "fit.json"):  # never beside the new checkpoint, even if this fit is killed
            (out / stale).unlink(missing_ok=True)
        cfg = preset(record["preset"], **{**overrides, "steps": record["steps"], "seed": record["seed"]})
        model = HLGFA(cfg, pretrained=pretrained).to(device)
        started = time.perf_counter()
        fit(model, train_image_paths(folder), progress=False, say=lambda line: say(f"{folder.name}: {line}"),
            cache_dir=cache_dir, **({} if max_cache_gib is None else {"max_cache_gib": max_cache_gib}))
        fit_seconds = round(time.perf_counter() - started, 1)
        save(model, run_dir, overwrite=True, extra={"fit": {"made_by": record, "seconds": fit_seconds}})
        write_json(out / "fit.json", {"seconds": fit_seconds, "made_by": record})
    result = evaluate(model, folder, progress=False)
    metrics = {**result.metrics, "fit_seconds": fit_seconds, "made_by": record}
    write_json(out / "metrics.json", metrics)
    return metrics


# --- the table --------------------------------------------------------------------------------------------------
def summary_table(results: dict[str, dict]) -> tuple[str, dict]:
    """Markdown table of every category, its mean and the paper's mean; and the means as a dict."""
    means = {key: sum(r[key] for r in results.values()) / len(results) for key in COLUMNS}
    header = "| category | image AUROC | pixel AUROC | AUPRO (FPR ≤ 0.3) | image F1-max |\n|---|---:|---:|---:|---:|"
    rows = [f"| {name} | " + " | ".join(f"{100 * r[k]:.1f}" for k in COLUMNS) + " |" for name, r in results.items()]
    rows.append(f"| **mean of {len(results)}** | " + " | ".join(f"**{100 * means[k]:.1f}**" for k in COLUMNS) + " |")
    rows.append(f"| paper (HLGFA, 15 categories) | {100 * PAPER['image_auroc']:.1f} | {100 * PAPER['pixel_auroc']:.1f} "
                "| — | — |")
    note = ("" if set(results) >= set(MVTEC_CATEGORIES) else
            f"\n\nOnly {len(results)} of MVTec AD's 15 categories were run: the means are not comparable with the "
            "paper's, which average all 15.")
    return "\n".join([header, *rows]) + note + "\n", means


def describe_run(record: dict) -> str:
    """What made every number of a table, in one line (the fields every category of one run shares)."""
    extra = "".join(f", {k}={v}" for k, v in record["overrides"].items())
    weights = "" if record["pretrained"] else ", random backbone weights"
    return (f"{record['preset']} preset, {record['steps']} steps, seed {record['seed']}{extra}{weights}, "
            f"hlgfa_lite {record['package_version']}")


def _write_table(out: Path, root: Path, results: dict[str, dict], record: dict) -> tuple[str, dict]:
    table, means = summary_table(results)
    shared = {k: record[k] for k in ("producer", "preset", "steps", "seed", "overrides", "pretrained",
                                     "package_version")}
    write_text(out / "results.md", f"# hlgfa_lite on {root} ({describe_run(record)})\n\n{table}")
    write_json(out / "results.json", {"root": str(root), "made_by": shared, "categories": results, "mean": means,
                                       "paper": PAPER})
    return table, means


# --- the whole root ---------------------------------------------------------------------------------------------
def check_count(name: str, value) -> int:
    """A count argument (steps, seed) as ``fit`` checks it: a whole number, steps >= 1, seed >= 0."""
    least = 0 if name == "seed" else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise HLGFAError(f"{name} must be a whole number >= {least}, got {value!r}.")
    return value


def plan_run(found: list[Path], out: Path, preset_name: str, steps: int | None, seed: int, overrides: dict,
             pretrained: bool, overwrite: bool) -> list[Step]:
    """Every category's step, decided before any work; a stored result of another run stops it here."""
    from ..config import preset

    cfg = preset(preset_name, **{**overrides, "seed": seed, **({} if steps is None else {"steps": steps})})
    plans = [plan_category(folder, out / folder.name, made_by(folder, preset_name, cfg.steps, cfg.seed, overrides,
                                                                pretrained)) for folder in found]
    conflicts = [step for step in plans if step.conflict]
    if conflicts and not overwrite:
        more = f" (and {len(conflicts) - 1} more categories)" if len(conflicts) > 1 else ""
        raise HLGFAError(f"{conflicts[0].conflict}{more}; pass --overwrite to redo such categories with this run's "
                         "settings, or choose another --out.")
    return plans


def _done_earlier(root: Path, out: Path, ran: list[Path], *settings) -> dict[str, dict]:
    """Results in ``out`` of the categories under ``root`` not in ``ran``, where this run's settings made them."""
    others = [p for p in categories(root) if p.name not in {folder.name for folder in ran}]
    plans = plan_run(others, out, *settings, overwrite=True) if others else []  # overwrite: read, never refuse
    return {step.folder.name: read_record(step.target / "metrics.json", metrics=True)[0]
            for step in plans if step.action == "reuse"}


def run_all(root: str | Path, out: str | Path, preset_name: str = "lite", steps: int | None = None,
            device: str = "cpu", pretrained: bool = True, overrides: dict | None = None,
            say: Callable[[str], None] = print, max_cache_gib: float | None = None,
            cache_dir: str | None = None, seed: int = 0, overwrite: bool = False,
            only: Sequence[str] | None = None) -> dict:
    """Run every category under ``root`` (or the ones named in ``only``) into ``out`` (resuming what this very run
    made), write the table; returns results and means. ``overwrite`` redoes categories whose stored results another
    run made."""
    steps = None if steps is None else check_count("steps", steps)
    seed, overrides = check_count("seed", seed), dict(overrides or {})
    if {"steps", "seed"} & set(overrides):
        raise HLGFAError("pass steps and seed as run_all's own arguments, not in overrides.")
    if max_cache_gib is not None and not (isinstance(max_cache_gib, (int, float)) and 0 < max_cache_gib < math.inf):
        raise HLGFAError(f"max_cache_gib must be a finite number > 0, got {max_cache_gib!r}.")
    found = categories(root, only)
    out = check_output_dir(Path(out), [Path(root), *found])  # a linked category resolves elsewhere: checked too
    root = Path(root).resolve()
    with exclusive(out):
        plans = plan_run(found, out, preset_name, steps, seed, overrides, pretrained, overwrite)
        results: dict[str, dict] = {}
        for index, step in enumerate(plans, 1):
            name, where = step.folder.name, f"[{index}/{len(plans)}] {step.folder.name}"
            if step.action == "reuse":
                results[name] = read_record(step.target / "metrics.json", metrics=True)[0]
                say(f"{where}: done already by this run's settings ({step.target / 'metrics.json'})")
                continue
            for line in (step.note, step.conflict and f"{step.conflict}: redoing it (--overwrite)"):
                if line:
                    say(f"{where}: {line}")
            say(f"{where}: fitting and evaluating ({describe_run(step.record)})" if step.action == "fit" else
                f"{where}: evaluating its checkpoint")
            results[name] = run_category(step, device, pretrained, overrides, say, max_cache_gib, cache_dir)
            r = results[name]
            say(f"{where}: image AUROC {r['image_auroc']:.4f}, pixel AUROC {r['pixel_auroc']:.4f}")
        earlier = _done_earlier(root, out, found, preset_name, steps, seed, overrides, pretrained) if only else {}
        if earlier:  # a run of some categories keeps the others this run's settings made in the table
            say(f"the table also holds {named(sorted(earlier), most=20)}, done earlier in {out} by these settings")
        table, means = _write_table(out, root, {**earlier, **results}, plans[0].record)
    if any(math.isnan(r[k]) for r in results.values() for k in COLUMNS if isinstance(r.get(k), float)):
        say("note: some metric is NaN (a category without defects or without masks)")
    say(table)
    return {"categories": results, "mean": means}
