"""Try every kind of bad input, tampering and misuse on the command line, and write what happened as a table.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python scripts/reliability_table.py [--out docs/reliability.md]

Each case runs ``hlgfa-lite`` in this process against a tiny checkpoint (random weights, 64/32 px: the checks,
not the method, are under test) or the bundled sample, and records the exit code and the first line printed on
stderr. A case passes when its exit code is the promised one. tests/test_reliability.py asserts the same
behaviours (and the crash test, which needs many processes, lives only there).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import socket
import struct
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import torch
from PIL import Image

from hlgfa_lite import HLGFA, preset, save
from hlgfa_lite.calibration import calibrate
from hlgfa_lite.tools.checkpoint import METADATA, TENSORS, checksum
from hlgfa_lite.tools.cli import main
from hlgfa_lite.assets import sample_dir


def tiny_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    model = HLGFA(preset("lite", hr_size=64, lr_size=32), pretrained=False).eval()
    model.calibration = calibrate(torch.tensor([1.0, 1.1, 1.2]), torch.linspace(0, 1, 16).reshape(1, 4, 4))
    return save(model, folder)


def edited(run: Path, folder: Path, change, resign: bool = True) -> Path:
    """A copy of ``run`` whose model.json went through ``change(meta)``, re-signed unless told otherwise."""
    shutil.copytree(run, folder)
    meta = json.loads((folder / METADATA).read_text())
    change(meta)
    if resign:
        meta["checksum"] = checksum(meta)
    (folder / METADATA).write_text(json.dumps(meta))
    return folder


def bomb(path: Path, side: int) -> Path:
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    at = data.index(b"IHDR")
    data[at + 4:at + 12] = struct.pack(">II", side, side)
    data[at + 17:at + 21] = struct.pack(">I", zlib.crc32(bytes(data[at:at + 17])))
    path.write_bytes(bytes(data))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(args: list) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    lines = [line for line in err.getvalue().splitlines() if line.strip() and not line.startswith("usage:")]
    return code, (lines[-1] if lines and code else "")


def earlier_results(tmp: Path, tiny: Path, good: Path) -> tuple[Path, Path]:
    """An --out holding the result of another folder's 000.png, and a checkpoint other than ``tiny``."""
    earlier = tmp / "earlier"
    shutil.copytree(good, tmp / "other_000")
    run(["predict", tiny, tmp / "other_000" / "000.png", "--out", earlier])
    other = edited(tiny, tmp / "other_tiny", lambda m: m["calibration"].update(
        image_threshold=m["calibration"]["image_threshold"] * 1.01))
    return earlier, other


def cases(tmp: Path, busy: socket.socket) -> list[tuple[str, str, list, int]]:
    sample = sample_dir()
    good = sample / "test" / "good"
    tiny = tiny_checkpoint(tmp / "tiny")
    (tmp / "file").write_text("a user's file")
    (tmp / "folder").mkdir()
    (tmp / "bomb").mkdir()
    (tmp / "corrupt").mkdir()
    (tmp / "corrupt" / "x.png").write_bytes((good / "000.png").read_bytes()[:200])
    (tmp / "w.safetensors").write_bytes(b"not tensors")
    truncated = edited(tiny, tmp / "truncated", lambda m: None)
    (truncated / TENSORS).write_bytes((truncated / TENSORS).read_bytes()[:100])
    deep = edited(tiny, tmp / "deep", lambda m: None)
    (deep / METADATA).write_text("[" * 50000 + "]" * 50000)
    broken = edited(tiny, tmp / "malformed", lambda m: None)
    (broken / METADATA).write_text('{"format_version": 2,')
    nan_threshold = edited(tiny, tmp / "nan", lambda m: m["calibration"].update(image_threshold=float("nan")))
    empty = tmp / "empty_masks"
    shutil.copytree(sample, empty)
    for mask in (empty / "ground_truth").rglob("*.png"):
        Image.new("L", Image.open(mask).size).save(mask)
    odd_mask = tmp / "odd_mask"
    shutil.copytree(sample, odd_mask)
    first = sorted((odd_mask / "ground_truth").rglob("*.png"))[0]
    Image.new("L", (10, 30), 255).save(first)  # another image's shape
    fit = ["fit", sample, "--out", tmp / "run"]
    predict = ["predict", tiny, good, "--out", tmp / "pred"]
    earlier, other_tiny = earlier_results(tmp, tiny, good)
    return [
        ("arguments", "`fit --steps 0`", fit + ["--steps", "0"], 2),
        ("arguments", "`fit --steps -5`", fit + ["--steps", "-5"], 2),
        ("arguments", "`fit --batch-size 0`", fit + ["--batch-size", "0"], 2),
        ("arguments", "`fit --epochs -1`", fit + ["--epochs", "-1"], 2),
        ("arguments", "`fit --target-fpr 0.7`", fit + ["--target-fpr", "0.7"], 2),
        ("arguments", "`predict --sensitivity nan`", predict + ["--sensitivity", "nan"], 2),
        ("arguments", "`predict --sensitivity 0`", predict + ["--sensitivity", "0"], 2),
        ("arguments", "`predict --sensitivity 1e-300`", predict + ["--sensitivity", "1e-300"], 2),
        ("arguments", "`fit --steps 100000000`", fit + ["--steps", "100000000"], 2),
        ("arguments", "`fit --batch-size 100000`", fit + ["--batch-size", "100000"], 2),
        ("arguments", "`demo --port 70000`", ["demo", "--port", "70000"], 2),
        ("outputs", "`fit --out` is an existing file", ["fit", sample, "--out", tmp / "file", "--steps", "1"], 2),
        ("outputs", "`fit --out` inside the training data", ["fit", sample, "--out", sample / "run", "--steps", "1"], 2),
        ("outputs", "`predict --out` inside the input folder", ["predict", tiny, good, "--out", good / "out"], 2),
        ("outputs", "`evaluate --json` is a folder", ["evaluate", tiny, sample, "--json", tmp / "folder"], 2),
        ("outputs", "`fit` into a folder that holds a checkpoint, no `--overwrite`", ["fit", sample, "--out", tiny], 2),
        ("outputs", "`evaluate --json` is a checkpoint's model.json", ["evaluate", tiny, sample, "--json",
                                                                      tiny / METADATA], 2),
        ("outputs", "`evaluate --json` is a user's file", ["evaluate", tiny, sample, "--json", tmp / "file"], 2),
        ("outputs", "`predict` of another folder's `000.png` into an `--out` that holds the first one's result",
         ["predict", tiny, good / "000.png", "--out", earlier], 2),
        ("outputs", "`predict` of another checkpoint into an `--out` that holds scores",
         ["predict", other_tiny, tmp / "other_000" / "000.png", "--out", earlier], 2),
        ("images", "196-megapixel PNG (decompression bomb)",
         ["predict", tiny, bomb(tmp / "bomb" / "x.png", 14000), "--out", tmp / "p1"], 2),
        ("images", "truncated PNG", ["predict", tiny, tmp / "corrupt", "--out", tmp / "p2"], 2),
        ("images", "folder without images", ["predict", tiny, tmp / "folder", "--out", tmp / "p3"], 2),
        ("images", "all ground-truth masks empty", ["evaluate", tiny, empty], 2),
        ("images", "a mask of another shape than its image", ["evaluate", tiny, odd_mask], 2),
        ("checkpoint", "`image_threshold` NaN in model.json (re-signed)", predict[:1] + [nan_threshold] + predict[2:], 2),
        ("checkpoint", "model.json edited, checksum not updated",
         predict[:1] + [edited(tiny, tmp / "edited", lambda m: m["calibration"].update(image_threshold=99.0),
                               resign=False)] + predict[2:], 2),
        ("checkpoint", "head.safetensors truncated (hash mismatch)",
         predict[:1] + [truncated] + predict[2:], 2),
        ("checkpoint", "negative `steps` in the config (re-signed)",
         predict[:1] + [edited(tiny, tmp / "steps", lambda m: m["config"].update(steps=-3))] + predict[2:], 2),
        ("checkpoint", "calibration fields out of order (re-signed)",
         predict[:1] + [edited(tiny, tmp / "order", lambda m: m["calibration"].update(image_threshold=0.0))]
         + predict[2:], 2),
        ("checkpoint", "model.json nested 50 000 deep", predict[:1] + [deep] + predict[2:], 2),
        ("checkpoint", "model.json cut off mid-way", predict[:1] + [broken] + predict[2:], 2),
        ("checkpoint", "`--run-dir` that does not exist", predict[:1] + [tmp / "none"] + predict[2:], 2),
        ("checkpoint", "corrupt `--weights` safetensors", predict + ["--weights", tmp / "w.safetensors"], 2),
        ("demo", "damaged `--run-dir`", ["demo", "--run-dir", broken, "--port", free_port()], 2),
        ("demo", "busy port", ["demo", "--port", busy.getsockname()[1]], 2),
        ("normal use", "`predict` on a good folder (for contrast)", predict, 0),
    ]


def main_table(out: Path) -> int:
    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as folder, socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))  # a port in use, for the demo's case
        busy.listen()
        for group, case, args, expected in cases(Path(folder), busy):
            code, message = run(args)
            ok = code == expected
            failures += not ok
            message = message.replace(folder, "TMP").replace(str(sample_dir()), "SAMPLE").replace("|", "\\|")
            rows.append(f"| {group} | {case} | {code} | {'✔' if ok else '✘ expected ' + str(expected)} | {message} |")
            print(f"{'ok ' if ok else 'BAD'} {code} {case}: {message}", flush=True)
    text = ["# Reliability: what bad input, tampering and crashes do",
            "",
            "Generated by `HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python scripts/reliability_table.py` (do not edit by "
            "hand). Every case runs the `hlgfa-lite` command line; the promise is exit code 2 and one line on stderr "
            "saying what to do, with nothing half-written. `tests/test_reliability.py` asserts the same cases, plus:",
            "",
            "* a kill (SIGKILL) at every step of `fit --overwrite`'s save leaves the old or the new checkpoint, "
            "loadable (the new folder is written beside the old one and the two are exchanged atomically);",
            "* a first checkpoint saved into a folder of the user's writes its two files there and nothing else: the "
            "folder and the user's files stay the same files, so a log a `tee` still writes into loses nothing;",
            "* random byte changes in either checkpoint file are refused (checksum, tensor hash) or change nothing;",
            "* arbitrary bytes given as an image or a mask give a tensor in [0, 1] or one error (hypothesis);",
            "* a NaN or infinite score is an error, never a *normal* verdict;",
            "* two `predict` runs into one `--out` keep both runs' rows; a concurrent one is refused; `x.png` and "
            "`x.jpg` get separate outputs (`x.png.png`, `x.jpg.png`); an interrupted `predict` lists in "
            "`scores.csv` every image whose overlay it wrote, each file written whole; each row names its image's "
            "absolute path, its overlay and the checksum of the checkpoint that scored it;",
            "* a second `fit` into the `--out` of a running one is refused at its start;",
            "* a mask's 0 is good however much of the image its defect covers; over half gets one warning line.",
            "",
            "| kind | case | exit code | as promised | message (stderr) |",
            "|---|---|---|---|---|",
            *rows, ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text))
    print(f"{len(rows) - failures}/{len(rows)} cases as promised; table in {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "reliability.md")
    torch.set_num_threads(1)
    sys.exit(main_table(parser.parse_args().out))
