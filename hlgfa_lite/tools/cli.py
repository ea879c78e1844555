"""Command line: ``hlgfa-lite fit | evaluate | predict | quickstart | mvtec | demo | space`` (also ``python -m hlgfa_lite``).

Every mistake a user can fix ends in one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import io
import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

# only light modules here and in build_parser: `--help` and a mistyped option answer at once, and the library's
# torch-backed modules load inside a command, where Ctrl-C in the seconds they take ends in one line
from ..config import (DEFAULT_CONFIDENCE, DEFAULT_MAX_CACHE_GIB, DEFAULT_TARGET_FPR, MAX_BATCH_SIZE, MAX_SENSITIVITY,
                      MAX_STEPS, MIN_SENSITIVITY, PRESETS)
from ..device import resolve_device
from ..errors import HLGFAError, named
from .files import check_replaceable, stale_staging, write_bytes, write_text
from .folders import check_output_dir, exclusive

EXIT_USAGE = 2


# --- argument types: every value checked when parsed ----------------------------------------------------------
def _number(kind, test, wanted: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number ({wanted})") from None
        try:
            usable = math.isfinite(value) and test(value)
        except OverflowError:  # a whole number too large for a float
            usable = False
        if not usable:
            raise argparse.ArgumentTypeError(f"{text[:40]} must be {wanted}")
        return value

    return parse


positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1")
steps_int = _number(int, lambda v: 1 <= v <= MAX_STEPS, f"a whole number in [1, {MAX_STEPS}]")
batch_int = _number(int, lambda v: 1 <= v <= MAX_BATCH_SIZE, f"a whole number in [1, {MAX_BATCH_SIZE}]")
sensitivity_float = _number(float, lambda v: MIN_SENSITIVITY <= v <= MAX_SENSITIVITY,
                            f"a number in [{MIN_SENSITIVITY}, {MAX_SENSITIVITY}] (1 = as calibrated)")
seed_int = _number(int, lambda v: 0 <= v < 2**63, "a whole number >= 0")
port_int = _number(int, lambda v: 1 <= v <= 65535, "a port number 1-65535")
positive_float = _number(float, lambda v: v > 0, "a finite number > 0")
fpr_float = _number(float, lambda v: 0 < v < 0.5, "a rate in (0, 0.5), e.g. 0.01")
confidence_float = _number(float, lambda v: 0.5 <= v < 1, "in [0.5, 1), e.g. 0.95")


def category_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no category (e.g. bottle,cable)")
    return names


def print_metrics(metrics: dict, per_type: dict | None = None) -> None:
    print(f"{'metric':<16}{'value':>10}")
    for key, value in metrics.items():
        print(f"{key:<16}{value:>10.4f}" if isinstance(value, float) else f"{key:<16}{value:>10}")
    for defect, auroc in (per_type or {}).items():
        print(f"  image AUROC {defect}: {auroc:.4f}")


# --- fit ------------------------------------------------------------------------------------------------------
def exact_steps(steps: int | None) -> dict:
    """--steps N as config overrides: exactly N head steps, whatever the data (passes 0); None: the preset's rule."""
    return {} if steps is None else {"steps": steps, "passes": 0.0}


def exact_batch(batch: int | None) -> dict:
    """--batch-size N as config overrides: exactly N images per head step, whatever the data (no smaller batches on a
    small set, ``training.head_batch``); None: the preset's rule."""
    return {} if batch is None else {"batch_size": batch, "min_batch_size": 0}


def fit_command(args) -> dict:
    from .checkpoint import METADATA
    from ..data import train_image_paths

    if args.steps is not None and args.epochs is not None:
        raise HLGFAError("give --steps or --epochs, not both: --steps N trains exactly N head steps, --epochs N makes "
                         "N passes over the training images within the preset's range of steps.")
    out = check_output_dir(Path(args.out), [Path(args.data)])
    check_replaceable(out, "checkpoint")  # a link pointing nowhere, or the folder you are in: refused now
    paths = train_image_paths(args.data)  # fit reads every image before any work, and nothing is written before it ends
    with exclusive(out, beside=True):  # a second fit into the same --out is refused now, not after this one's work
        if (out / METADATA).exists() and not args.overwrite:
            raise HLGFAError(f"{out} already holds a checkpoint; choose another --out or pass --overwrite.")
        for left in stale_staging(out):  # ours, by name, and no run holds --out: a killed fit's leftovers
            shutil.rmtree(left, ignore_errors=True)
            print(f"removed {left}, left by a fit that was stopped before it finished")
        return fit_into(out, paths, args)


def fit_into(out: Path, paths: list[Path], args) -> dict:
    """The fit itself, while ``out`` is held: the model, its report, and the checkpoint written whole."""
    from .checkpoint import save
    from ..config import preset
    from ..model import HLGFA
    from ..training import fit

    overrides = {"seed": args.seed, **exact_batch(args.batch_size)}
    overrides.update(exact_steps(args.steps))
    if args.epochs is not None:
        overrides["passes"] = float(args.epochs)
    if args.backbone_runtime:
        overrides["backbone_runtime"] = args.backbone_runtime
    cfg = preset(args.preset, **overrides)
    device = resolve_device(args.device)
    model = HLGFA(cfg, pretrained=not args.random_weights, weights=args.weights).to(device)
    print(f"backbone {cfg.backbone} ({model.backbone.weights_source}), {len(paths)} good images, "
          f"device {device}")
    started = time.perf_counter()
    report = fit(model, paths, progress=not args.quiet, target_fpr=args.target_fpr, confidence=args.confidence,
                 max_cache_gib=args.max_cache_gib, cache_dir=args.cache_dir)
    seconds = time.perf_counter() - started
    save(model, out, overwrite=args.overwrite, extra={"fit": {
        "preset": args.preset, "data": str(Path(args.data).resolve()), "n_train": report.n_train, "n_holdout": report.n_holdout,
        "steps": report.steps, "batch_size": report.batch_size, "precision": report.precision,
        "seconds": round(seconds, 1), "first_loss": report.losses[0], "last_loss": report.losses[-1],
        "map_scale_auroc": report.map_scale_auroc, "grayscale": report.grayscale}})
    cal = model.calibration
    print(f"fit done in {seconds:.0f} s (features {report.cache_seconds:.0f} s, head {report.train_seconds:.0f} s); "
          f"loss {report.losses[0]:.4f} -> {report.losses[-1]:.4f}")
    if report.map_scale_auroc:
        levels = f", normality levels {model.cfg.normality_levels!r}" if "/" in next(iter(report.map_scale_auroc)) else ""
        print(f"map scale {model.cfg.map_scale!r}{levels}, chosen on synthetic defects (pixel AUROC " + ", ".join(
            f"{scale} {value:.4f}" for scale, value in report.map_scale_auroc.items()) + ")")
    print(f"threshold {cal.image_threshold:.3f} (borderline above {cal.borderline_threshold:.3f}) for a "
          f"{100 * cal.target_fpr:g} % false-alarm target, from {cal.n_images} good scores "
          f"({report.n_holdout} held out, {len(report.cross_fit_scores)} cross-fitted); checkpoint in {out}")
    return {"model": model, "report": report}


# --- evaluate -------------------------------------------------------------------------------------------------
def model_checksum(run_dir) -> str:
    from .checkpoint import read_metadata

    return read_metadata(run_dir)["checksum"]


MAX_METRICS_BYTES = 2 ** 20  # a metrics record is a few hundred bytes


def check_metrics_file(path: Path, data: Path) -> None:
    """Before any work: ``--json`` names a new file, or a metrics record an earlier ``evaluate`` wrote (it names the
    checkpoint it measured), outside the data; never another file (a checkpoint's model.json, an image, notes)."""
    if path.is_dir():
        raise HLGFAError(f"--json {path} is a folder; give a file name such as {path / 'metrics.json'}.")
    check_output_dir(path.parent, [data], what="--json folder")
    if os.path.lexists(path) and not is_metrics_record(path):
        raise HLGFAError(f"--json {path} exists and is not a metrics file `evaluate` wrote; it is left as it is: "
                         "give a new file name.")


def is_metrics_record(path: Path) -> bool:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_METRICS_BYTES:
            return False
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "checkpoint_checksum" in record


MOST = 0.5  # evaluate's share of good test images flagged above which it says the checkpoint fits other parts


def evaluate_command(args):
    from .checkpoint import load
    from ..data import load_test_split
    from ..evaluation import evaluate_samples, verdict_rates

    if args.json:
        check_metrics_file(Path(args.json), Path(args.data))
    samples = load_test_split(args.data)
    model = load(args.run_dir, device=resolve_device(args.device), weights=args.weights,
                 backbone_runtime=args.backbone_runtime)
    result = evaluate_samples(model.score_batch, samples, model.cfg.eval_size, progress=not args.quiet)
    rates = verdict_rates(result.scores, result.labels, model.calibrated)
    result.metrics.update(image_fpr=rates["image_fpr"], image_tpr=rates["image_tpr"],
                          image_threshold=model.threshold())
    print_metrics(result.metrics, result.per_type)
    if rates["image_fpr"] >= MOST:  # a 1 % target calibrated on these parts flags a few good ones, not most
        print(f"note: {rates['image_fpr']:.0%} of the good test images are flagged: the checkpoint was likely fitted "
              "on other parts or another capture; fit one on good images of these parts")
    if args.json:  # the record names the checkpoint it measured, so it can never be mistaken for another's
        record = {**result.metrics, "checkpoint_checksum": model_checksum(args.run_dir)}
        write_text(Path(args.json), json.dumps(record, indent=2))
        print(f"metrics written to {args.json}")
    return result


# --- predict --------------------------------------------------------------------------------------------------
# path: the image, absolute; overlay: its picture under --out/overlays; checkpoint: the checksum of the head that
# scored it. A table written before the last two columns existed is still read (and kept) without them
SCORE_FIELDS = ["path", "score", "verdict", "is_anomalous", "threshold", "sensitivity", "overlay", "checkpoint"]
REQUIRED_FIELDS = SCORE_FIELDS[:6]


def output_name(relative: Path, suffix: str) -> Path:
    """x.png -> x.png.png, x.jpg -> x.jpg.png: results of two images never share a name."""
    return relative.with_name(relative.name + suffix)


def _row_problem(row: dict) -> str | None:
    """Why a row of an earlier scores.csv could not be written back as it is (None when it can)."""
    from ..calibration import VERDICTS

    if None in row:
        return "more fields than the header"
    missing = [name for name in REQUIRED_FIELDS if row.get(name) is None]
    if missing:
        return f"no {missing[0]} field"
    if not row["path"]:
        return "an empty path"
    for name in ("score", "threshold", "sensitivity"):
        try:
            if not math.isfinite(float(row[name])):
                raise ValueError
        except ValueError:
            return f"{name} {row[name][:40]!r} is not a finite number"
    if row["verdict"] not in VERDICTS or row["is_anomalous"] not in ("True", "False"):
        return f"verdict {row['verdict'][:40]!r} / is_anomalous {row['is_anomalous'][:40]!r} are not this tool's"
    return None


def _read_rows(path: Path) -> list[dict]:
    """Rows of an earlier scores.csv in the same --out (kept unless re-scored); a damaged one is refused, every row
    checked, so that the run that would write it back fails before scoring anything, never after."""
    if not os.path.lexists(path):
        return []
    advice = "move it away or choose another --out."
    if not path.is_file():
        raise HLGFAError(f"{path} exists but is not a file (scores.csv goes there); {advice}")
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise HLGFAError(f"{path} exists but cannot be read ({exc}); {advice}") from None
    if reader.fieldnames is not None and set(reader.fieldnames) not in (set(SCORE_FIELDS), set(REQUIRED_FIELDS)):
        raise HLGFAError(f"{path} was not written by this hlgfa-lite (columns {sorted(map(str, reader.fieldnames))}); "
                         f"{advice}")
    for number, row in enumerate(rows, 2):
        problem = _row_problem(row)
        if problem:
            raise HLGFAError(f"{path} line {number} is malformed ({problem}): an earlier run's scores cannot be kept; "
                             f"{advice}")
    return rows


def check_earlier_rows(out: Path, earlier: list[dict], images: list[tuple[Path, Path]], checkpoint: str) -> None:
    """Before any image is scored: an earlier run's rows in --out come from the same checkpoint, and no picture it
    wrote belongs to another image of the same name (``x.png`` from two folders), which this run would overwrite
    while the table still named the first image."""
    if any(row.get("checkpoint") not in (None, "", checkpoint) for row in earlier):
        raise HLGFAError(f"{out} holds scores from another checkpoint; predict into another --out, or move "
                         f"{out / 'scores.csv'} away.")
    owners = {row["overlay"]: row["path"] for row in earlier if row.get("overlay")}
    for image, relative in images:
        name = output_name(relative, ".png").as_posix()
        if owners.get(name, str(image.resolve())) != str(image.resolve()):
            raise HLGFAError(f"{out / 'overlays' / name} is the result of {owners[name]}, from an earlier run; "
                             f"predict {image} into another --out.")


def check_predict_targets(out: Path, relatives: list[Path], save_maps: bool) -> None:
    """Before any image is scored: every file predict writes can be written where it goes (no file of the user's
    where a folder goes, no folder where a file goes)."""
    targets = [Path("overlays") / output_name(r, ".png") for r in relatives]
    targets += [Path("maps") / output_name(r, ".npy") for r in relatives] if save_maps else []
    folders = {parent for target in targets for parent in target.parents if parent != Path(".")}
    for folder in sorted(folders, key=lambda p: len(p.parts)):
        if os.path.lexists(out / folder) and not (out / folder).is_dir():
            why = " (--save-maps writes its maps there)" if folder == Path("maps") else ""
            raise HLGFAError(f"{out / folder} is a file where predict writes a folder{why}; move it away or "
                             "choose another --out.")
    for target in targets:
        if (out / target).is_dir():
            raise HLGFAError(f"{out / target} is a folder where predict writes a file; move it away or choose "
                             "another --out.")


def images_to_predict(sources: list[Path]) -> list[tuple[Path, Path]]:
    """(image, its name in the results) for each image file given (its file name) and each image inside each folder
    given (its path relative to that folder), in order; one line for a source that is missing or holds no image.
    Where two different images would share a name (``test/good`` and ``test/broken``, each holding ``000.png``), every
    result is named by its path under the deepest folder holding all the sources instead, and a note says so. A
    folder's other files (not hidden ones) are named in one note, so that a photo in a format not read here is not
    passed over in silence."""
    from ..data import IMAGE_EXTENSIONS, files_below, has_image_extension

    given: list[tuple[Path, Path]] = []  # (image, name as if given alone)
    for source in sources:
        if source.is_file():
            given.append((source, Path(source.name)))
        elif source.is_dir():
            # every file a person put there (hidden ones are a system's), then the images among them
            files = [(p, p.relative_to(source)) for p in files_below(source)]
            images = [(p, name) for p, name in files if has_image_extension(p)]
            others = [str(name) for p, name in files if not has_image_extension(p)]
            if not images:
                raise HLGFAError(f"{source} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
            if others:
                print(f"note: {len(others)} file(s) in {source} are not images and are skipped ({named(others)})")
            given.extend(images)
        else:
            raise HLGFAError(f"{source} does not exist; give image files or folders of images.")
    found = results_named(given)
    if found is None:  # names shared by different images: each named by its path under the sources' common folder
        base = Path(os.path.commonpath([os.path.abspath(s if s.is_dir() else s.parent) for s in sources]))
        found = results_named([(image, Path(os.path.abspath(image)).relative_to(base)) for image, _ in given])
        print(f"note: some images given share a file name; each result is named by its path under {base}")
    return [(image, name) for name, image in found.items()]


def results_named(images: list[tuple[Path, Path]]) -> dict[Path, Path] | None:
    """{name: image}, an image given twice kept once; None if two different images would share a name."""
    found: dict[Path, Path] = {}
    for image, name in images:
        if found.setdefault(name, image).resolve() != image.resolve():
            return None
    return found


def predict_command(args) -> list[dict]:
    import numpy as np

    from .checkpoint import load, read_metadata
    from ..data import MAX_SIDE, MIN_TRAINING_SIDE, decode, is_grayscale, load_image, pil_to_tensor
    from .visualize import outline, overlay, save_png

    sources = [Path(source) for source in args.images]
    images = images_to_predict(sources)  # [(image, name in the results)]
    paths = [path for path, _ in images]
    out = check_output_dir(Path(args.out), sources)
    metadata = read_metadata(args.run_dir)
    checkpoint = metadata["checksum"]
    # every check of --out and its files before any slow work (again below, once --out is held)
    check_earlier_rows(out, _read_rows(out / "scores.csv"), images, checkpoint)
    check_predict_targets(out, [relative for _, relative in images], args.save_maps)
    model = load(args.run_dir, device=resolve_device(args.device), weights=args.weights,
                 backbone_runtime=args.backbone_runtime)
    cal = model.calibrated
    record = metadata.get("fit")
    fitted_gray = record.get("grayscale") if isinstance(record, dict) else None  # None: a checkpoint that never said
    tiny, other_colour, several_frames = [], [], []
    for path in paths:  # every image readable before anything is written
        decoded = decode(path, MAX_SIDE)
        image = pil_to_tensor(decoded.image)
        if min(image.shape[-2:]) < MIN_TRAINING_SIDE:
            tiny.append(path.name)
        if fitted_gray is not None and is_grayscale(image) != fitted_gray:
            other_colour.append(path.name)
        if decoded.multi_frame:
            several_frames.append(path.name)
    if several_frames:
        print(f"note: {len(several_frames)} file(s) hold several frames or pages; only the first of each is scored "
              f"({named(several_frames)})")
    if tiny:
        print(f"note: {len(tiny)} image(s) are under {MIN_TRAINING_SIDE} px on a side, too small for their scores to "
              f"mean much ({named(tiny)})")
    if other_colour:
        fitted, given = ("grayscale", "in colour") if fitted_gray else ("colour", "grayscale")
        print(f"note: this checkpoint was fitted on {fitted} images and {len(other_colour)} of these are {given} "
              f"({named(other_colour)}): their scores may read the difference as a defect")
    rows = []
    with exclusive(out):
        earlier = _read_rows(out / "scores.csv")
        check_earlier_rows(out, earlier, images, checkpoint)
        check_predict_targets(out, [relative for _, relative in images], args.save_maps)
        try:
            for path, relative in images:
                image = load_image(path, MAX_SIDE)
                [(anomaly_map, score)] = model.predict([image])
                verdict = cal.verdict(score, args.sensitivity)  # NaN/inf: HLGFAError, never "normal"
                picture = overlay(image, anomaly_map, cal.map_vmin, cal.map_vmax)
                picture = outline(picture, cal.mask(anomaly_map.numpy(), args.sensitivity))
                overlay_name = output_name(relative, ".png")
                save_png(picture, out / "overlays" / overlay_name)
                if args.save_maps:
                    saved = io.BytesIO()
                    np.save(saved, anomaly_map.numpy().astype(np.float32))
                    write_bytes(out / "maps" / output_name(relative, ".npy"), saved.getvalue(), what="map")
                rows.append({"path": str(path.resolve()), "score": score, "verdict": verdict,
                             "is_anomalous": verdict == "anomalous", "threshold": cal.threshold(args.sensitivity),
                             "sensitivity": args.sensitivity, "overlay": overlay_name.as_posix(),
                             "checkpoint": checkpoint})
                print(f"{score:8.3f}  {verdict.upper():<10}  {path}")
        finally:  # interrupted or stopped too: the table lists every image whose overlay was written
            scored = {row["path"] for row in rows}
            kept = [row for row in earlier if row["path"] not in scored] + rows
            if kept:  # none scored and none before (the first write failed): no table of nothing
                buffer = io.StringIO()
                writer = csv.DictWriter(buffer, fieldnames=SCORE_FIELDS)
                writer.writeheader()
                writer.writerows(kept)
                write_text(out / "scores.csv", buffer.getvalue())
    images = "1 image" if len(rows) == 1 else f"{len(rows)} images"
    print(f"{images} scored (anomalous above {cal.threshold(args.sensitivity):.3f}, borderline above "
          f"{cal.borderline(args.sensitivity):.3f}); results in {out}")
    return rows


# --- quickstart -----------------------------------------------------------------------------------------------
def quickstart_command(args) -> Path:
    import torch

    from .checkpoint import save
    from ..config import preset
    from ..data import load_image, load_mask, load_test_split, train_image_paths
    from ..evaluation import evaluate_samples, verdict_rates
    from ..model import HLGFA
    from ..assets import sample_dir
    from ..training import fit
    from .visualize import panel_figure

    out = Path(args.out)
    for n in range(2, 1000):  # never overwrite an earlier run: runs/quickstart, runs/quickstart-2, ...
        if not out.exists():
            break
        out = Path(f"{args.out}-{n}")
    check_output_dir(out)
    data = sample_dir()
    cfg = preset("lite", **exact_steps(args.steps))
    model = HLGFA(cfg, weights=args.weights).to(resolve_device(args.device))
    kept = f" ({args.out} holds an earlier run, kept)" if out != Path(args.out) else ""
    print(f"quickstart: fitting the lite preset on the bundled bottle sample ({data}) into {out}{kept}")
    print(f"backbone {cfg.backbone} ({model.backbone.weights_source})")
    started = time.perf_counter()
    report = fit(model, train_image_paths(data), progress=not args.quiet)
    save(model, out)
    print(f"fit in {time.perf_counter() - started:.0f} s, loss {report.losses[0]:.4f} -> {report.losses[-1]:.4f}")
    samples = load_test_split(data)
    result = evaluate_samples(model.score_batch, samples, cfg.eval_size, progress=not args.quiet)
    result.metrics.update({k: v for k, v in verdict_rates(result.scores, result.labels, model.calibrated).items()
                           if k in ("image_fpr", "image_tpr")})
    print_metrics(result.metrics)
    write_text(out / "metrics.json", json.dumps(result.metrics, indent=2))
    # fixed picks, chosen by name before anything is scored: the first good image, the first of each defect type
    picks = [next(s for s in samples if s.label == 0)] + [next(s for s in samples if s.defect_type == t)
                                                          for t in sorted({s.defect_type for s in samples} - {"good"})]
    rows = []
    for sample in picks:
        image = load_image(sample.path)
        [(anomaly_map, score)] = model.predict([image])
        verdict = model.verdict(score)
        rows.append({"image": image, "map": anomaly_map, "title": f"{sample.defect_type}: score {score:.2f} ({verdict})",
                     "mask": load_mask(sample.mask_path, image.shape[-2:]).numpy() if sample.mask_path else None})
    with torch.no_grad():
        panel_figure(rows, model.calibration.map_vmin, model.calibration.map_vmax, out / "overlays.png")
    print(f"checkpoint: {out}\nmetrics:    {out / 'metrics.json'}\nfigure:     {out / 'overlays.png'}")
    print(f"next: hlgfa-lite predict {out} IMAGES_OR_FOLDERS --out predictions")
    return out


def demo_command(args) -> None:
    try:
        from ..demo.app import launch_demo
    except ImportError as exc:
        raise HLGFAError(f'the demo needs its extras: pip install "hlgfa-lite[demo]" ({exc}).') from exc
    import socket

    try:  # a busy port is one line here, not a traceback from deep inside the web server
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as exc:
        raise HLGFAError(f"cannot serve on {args.host}:{args.port} ({exc.strerror or exc}); the port is busy or "
                         "not allowed: pass --port with a free one.") from None
    if args.run_dir:
        from .checkpoint import read_metadata

        read_metadata(args.run_dir)  # a damaged checkpoint: one line before the server starts
    # launch_demo applies the demo's own limits (queue, concurrency, upload size), as the Space does
    launch_demo(args.run_dir, device=resolve_device(args.device), server_name=args.host, server_port=args.port)


def mvtec_command(args) -> dict:
    from .mvtec import run_all

    return run_all(args.root, args.out, args.preset, steps=args.steps, device=resolve_device(args.device),
                   pretrained=not args.random_weights, max_cache_gib=args.max_cache_gib,
                   cache_dir=args.cache_dir, seed=args.seed, overwrite=args.overwrite, only=args.categories)


def space_command(args) -> Path:
    from .space import SPACE_ENTRIES, build_space

    out = build_space(args.out, overwrite=args.overwrite)
    print(f"Space folder written to {out}: {', '.join(SPACE_ENTRIES)} (any other file there is kept)")
    print("publish it (create an empty Gradio Space first), either route:")
    print(f"  hf upload YOU/SPACE {out} . --repo-type space")
    print("  git clone https://huggingface.co/spaces/YOU/SPACE space && hlgfa-lite space space --overwrite && "
          "cd space && git add . && git commit -m demo && git push    (needs git-lfs)")
    return out


# --- argument parsing -----------------------------------------------------------------------------------------
SPACE_OVERWRITE_HELP = ("update a folder that is not empty, such as a clone of your Space: only the entries this "
                        "command writes (app.py, README.md, requirements.txt, .gitattributes, hlgfa_lite/) are "
                        "replaced; .git and every other file are kept")


def cache_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-cache-gib", type=positive_float, default=DEFAULT_MAX_CACHE_GIB,
                   help="host memory for the training images and their feature cache; over it the cache is written "
                   "to a temporary file and read back per batch, the same values (default %(default)s)")
    p.add_argument("--cache-dir", default=None,
                   help="folder for that temporary file (default: the system's temporary folder)")


def common(p: argparse.ArgumentParser, weights: bool = True) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if weights:
        p.add_argument("--weights", default=None, help="backbone weights file (else HLGFA_WEIGHTS, Hub, cache)")


def runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone-runtime", default=None, metavar="{torch,onnxruntime}",
                   help="how the frozen backbone runs on a CPU (onnxruntime: pip install 'hlgfa-lite[fast]', "
                        "same features, faster); default: the preset's or checkpoint's (torch)")


def count_options(p: argparse.ArgumentParser, steps_help: str) -> None:
    """--steps and --seed, parsed alike by every command that fits (0 steps is refused, never "the default")."""
    p.add_argument("--steps", type=steps_int, default=None, help=steps_help)
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the head, the draws and the split (default 0)")


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in one line, as every other error of the command: the usage is what --help is for.
    Its subcommands' parsers are of this class too (``add_subparsers`` makes them of the parent's class).

    Options are taken only as spelt in full: an abbreviation that works today (``--step`` for ``--steps``) would
    break a user's script the day another option starts the same way."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def options(self) -> list[str]:
        return [option for action in self._actions for option in action.option_strings]

    def meant(self, word: str) -> str | None:
        """The option a mistyped ``--word`` most likely meant: the one it begins (``--cat``: ``--categories``), else
        the closest spelling (``--sensitivty``: ``--sensitivity``); None when none is near."""
        spelt = word.split("=")[0]
        begun = [option for option in self.options() if option.startswith(spelt)]
        if len(begun) == 1:
            return begun[0]
        close = difflib.get_close_matches(spelt, self.options(), n=1)
        return close[0] if close else None

    def refuse_unknown(self, unknown: list[str]) -> None:
        """One line naming what this command does not take, with the option it most likely meant."""
        spelt = [word for word in unknown if word.startswith("--")]
        meant = self.meant(spelt[0]) if spelt else None
        hint = f"; did you mean {meant}?" if meant else ""
        self.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")

    def refuse_near_misses(self, argv: list[str]) -> None:
        """Before argparse's own checks: a mistyped required option (``--ou``) would otherwise be reported only as
        "--out is required", never named."""
        known = set(self.options())
        for word in argv:
            if word == "--":  # what follows is positional
                return
            if word.startswith("--") and word.split("=")[0] not in known and self.meant(word):
                self.refuse_unknown([word])

    def say_empty(self, dest: str) -> None:
        action = next((a for a in self._actions if a.dest == dest), None)
        name = action.option_strings[0] if action is not None and action.option_strings else dest.replace("_", "-")
        self.error(f"{name} is an empty string (an unset shell variable?); give a path")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="hlgfa-lite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit the alignment head on good images")
    p.add_argument("data", help="MVTec-layout category folder, or a folder of good images")
    p.add_argument("--out", required=True, help="run folder for the checkpoint")
    p.add_argument("--preset", default="lite", choices=sorted(PRESETS), help="model recipe (default %(default)s)")
    count_options(p, "exactly this many head steps (default: the preset's rule, lite: 5 passes within 125-500)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="passes over the training images, in place of the preset's (lite: 5), within its range of "
                        "steps (lite: 125-500, so a small set makes more passes)")
    p.add_argument("--batch-size", type=batch_int, default=None,
                   help="exactly this many images per head step (default: the preset's rule, lite: 16, or 8-15 on "
                        "sets under 400 images)")
    p.add_argument("--target-fpr", type=fpr_float, default=DEFAULT_TARGET_FPR,
                   help="share of good parts allowed above the image threshold (default %(default)s)")
    p.add_argument("--confidence", type=confidence_float, default=DEFAULT_CONFIDENCE,
                   help="probability that the target holds despite few calibration images (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint in --out")
    p.add_argument("--random-weights", action="store_true", help="random backbone (for tests only)")
    cache_options(p)
    common(p)
    runtime(p)
    p.set_defaults(func=fit_command)

    p = sub.add_parser("evaluate", help="image/pixel AUROC, AUPRO, F1-max and speed on a test split")
    p.add_argument("run_dir", help="checkpoint folder (what fit --out wrote)")
    p.add_argument("data", help="MVTec-layout category folder")
    p.add_argument("--json", default=None,
                   help="also write the metrics to this JSON file (a new file, or one evaluate wrote before)")
    common(p)
    runtime(p)
    p.set_defaults(func=evaluate_command)

    p = sub.add_parser("predict", help="score images; write scores.csv, overlays and (optionally) maps")
    p.add_argument("run_dir", help="checkpoint folder (what fit --out wrote)")
    p.add_argument("images", nargs="+", help="image files and folders (searched recursively), e.g. a shell's *.png")
    p.add_argument("--out", required=True, help="results folder: scores.csv, overlays/, maps/")
    p.add_argument("--save-maps", action="store_true", help="raw float32 maps as maps/<path>.npy")
    p.add_argument("--sensitivity", type=sensitivity_float, default=1.0, help=">1 flags more images, <1 fewer")
    common(p)
    runtime(p)
    p.set_defaults(func=predict_command)

    p = sub.add_parser("quickstart", help="fit, evaluate and draw on the bundled sample, offline")
    p.add_argument("--out", default="runs/quickstart",
                   help="run folder (default %(default)s; an existing one is kept, the run goes to <out>-2, -3, ...)")
    p.add_argument("--steps", type=steps_int, default=None,
                   help="exactly this many head steps (default: the lite rule, 5 passes within 125-500)")
    common(p)
    p.set_defaults(func=quickstart_command)

    p = sub.add_parser("mvtec", help="fit and evaluate every category of an MVTec AD root (resumable), with a table")
    p.add_argument("root", help="the MVTec AD folder holding bottle/, cable/, ...")
    p.add_argument("--out", default="runs/mvtec", help="results folder; run again with it to resume")
    p.add_argument("--preset", default="lite", choices=["lite", "paper"])
    p.add_argument("--categories", type=category_names, metavar="A,B", help="only these (default: all under root)")
    count_options(p, "optimiser steps per category (preset default)")
    p.add_argument("--overwrite", action="store_true",
                   help="redo categories whose stored results another run made (other preset, steps, seed, data "
                   "or version); without it such a run stops before any work")
    cache_options(p)
    p.add_argument("--random-weights", action="store_true", help="random backbone (for tests only)")
    common(p, weights=False)
    p.set_defaults(func=mvtec_command)

    p = sub.add_parser("demo", help="start the Gradio demo locally")
    p.add_argument("--run-dir", default=None, help="checkpoint to serve (default: the bundled bottle model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_int, default=7860)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.set_defaults(func=demo_command)

    p = sub.add_parser("space", help="write a Hugging Face Space folder for the demo (push it as it is)")
    p.add_argument("out", help="folder to write (must be new or empty, unless --overwrite); . is the current one")
    p.add_argument("--overwrite", action="store_true", help=SPACE_OVERWRITE_HELP)
    p.set_defaults(func=space_command)
    parser.commands = sub.choices  # {name: its parser}
    return parser


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the CLI's errors are: one line on stderr, without the Python source line beneath it."""
    print(f"warning: {message}", file=sys.stderr)


def load_torch_holding_ctrl_c() -> bool:
    """Import torch, torchvision and timm with Ctrl-C held back; True if it was pressed meanwhile.

    Their imports run Python from inside C++ (pybind11): an interrupt raised there can abort the process with a C++
    message, or leave Python to kill itself with SIGINT on exit after the interrupt was handled. Held back, a Ctrl-C
    in those seconds is answered the moment they end, in one line, like one at any other moment."""
    import importlib
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set a handler
        importlib.import_module("timm")
        return False
    pressed = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: pressed.append(number))
    try:
        importlib.import_module("timm")  # loads torch and torchvision
    finally:
        signal.signal(signal.SIGINT, previous)
    return bool(pressed)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()  # loads no torch: --help and usage errors answer at once
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in parser.commands:
        parser.commands[argv[0]].refuse_near_misses(argv[1:])
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's parser, whose --help lists what it takes
        parser.commands[args.command].refuse_unknown(unknown)
    for name, value in vars(args).items():  # `--out "$OUT"` with OUT unset would mean the current folder
        if value == "" or (isinstance(value, list) and "" in value):
            parser.commands[args.command].say_empty(name)
    try:
        if load_torch_holding_ctrl_c():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        print("interrupted; nothing was written.", file=sys.stderr)
        return 130
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("once")
            warnings.showwarning = one_line_warning
            args.func(args)
    except HLGFAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was kept.", file=sys.stderr)
        return 130
    except OSError as exc:  # the file system refused (disk full, permissions changed while running)
        name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: cannot read or write{name} ({exc.strerror or exc}); free space or fix permissions, "
              "then run again.", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
