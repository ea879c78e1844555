"""Attacks: every kind of bad input, tampering and crash ends in one HLGFAError line (exit code 2 in the CLI),
never in a traceback, a silent wrong verdict or a lost checkpoint. ``scripts/reliability_table.py`` runs the same
cases and writes docs/reliability.md."""

import json
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hlgfa_lite import HLGFA, HLGFAError, load, preset, save
from hlgfa_lite.calibration import calibrate
from hlgfa_lite.tools.checkpoint import METADATA, TENSORS, checksum
from hlgfa_lite.tools.cli import main
from hlgfa_lite.data import load_image, load_mask

TINY = dict(hr_size=64, lr_size=32)


def tiny_model(seed: int = 0) -> HLGFA:
    """Random backbone and head at 64/32 px, calibrated on made-up good scores: a checkpoint in milliseconds."""
    torch.manual_seed(seed)  # the random backbone's weights; the head starts from the config's seed
    model = HLGFA(preset("lite", seed=seed, **TINY), pretrained=False).eval()
    model.calibration = calibrate(torch.tensor([1.0, 1.1, 1.2]), torch.linspace(0, 1, 16).reshape(1, 4, 4))
    return model


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return save(tiny_model(), tmp_path_factory.mktemp("tiny") / "run")


def png_with_size(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height but whose data is a few bytes: a decompression bomb's shape."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def run_cli(args, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse: usage line + error line, exit code 2
        code = exc.code
    return code, capsys.readouterr().err


# --- arguments checked when parsed ---------------------------------------------------------------------------
@pytest.mark.parametrize("flag, value", [("--steps", "0"), ("--steps", "-5"), ("--batch-size", "0"),
                                         ("--batch-size", "-1"), ("--epochs", "0"), ("--seed", "-1"),
                                         ("--target-fpr", "0"), ("--target-fpr", "nan"), ("--confidence", "1"),
                                         # beyond what memory holds: the plan of reads, a step's batch
                                         ("--steps", "1000001"), ("--steps", "99999999999999999999"),
                                         ("--steps", "1" + "0" * 400), ("--batch-size", "100000")])
def test_fit_arguments_are_checked_when_parsed(flag, value, sample, tmp_path, capsys):
    code, err = run_cli(["fit", sample, "--out", tmp_path / "run", flag, value], capsys)
    assert code == 2 and flag in err and not (tmp_path / "run").exists()


def test_steps_and_epochs_together_are_refused_before_any_work(sample, tmp_path, capsys):
    """--steps N is exactly N steps, --epochs N is passes within the preset's range: together they contradict."""
    code, err = run_cli(["fit", sample, "--out", tmp_path / "run", "--steps", "5", "--epochs", "2"], capsys)
    assert code == 2 and err == ("error: give --steps or --epochs, not both: --steps N trains exactly N head steps, "
                                 "--epochs N makes N passes over the training images within the preset's range of "
                                 "steps.\n") and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [["space", ""], ["predict", "run", "x.png", "--out", ""], ["fit", "", "--out", "r"],
                                  ["predict", "run", "a.png", "", "--out", "o"]])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(args, capsys)
    assert code == 2 and "empty string (an unset shell variable?)" in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "abc", "1e-300", "101"])
def test_sensitivity_is_checked_when_parsed(value, tiny_run, sample, tmp_path, capsys):
    code, err = run_cli(["predict", tiny_run, sample / "test" / "good", "--out", tmp_path / "p", "--sensitivity",
                         value], capsys)
    assert code == 2 and "--sensitivity" in err and not (tmp_path / "p").exists()


# --- outputs checked before any work --------------------------------------------------------------------------
def test_out_that_is_a_file_or_inside_the_inputs_is_refused_before_training(sample, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    code, err = run_cli(["fit", sample, "--out", a_file, "--steps", "1"], capsys)
    assert code == 2 and "is a file" in err and a_file.read_text() == "keep me"
    code, err = run_cli(["fit", sample, "--out", sample / "run", "--steps", "1"], capsys)
    assert code == 2 and "inside the input folder" in err and not (sample / "run").exists()


def test_a_missing_data_folder_is_named_whatever_the_out(tmp_path, capsys, monkeypatch):
    """Only a real input folder can hold --out: a mistyped one is reported as missing, not as holding --out."""
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["fit", "nosuchdir", "--out", "run", "--steps", "1"], capsys)
    assert code == 2 and "nosuchdir" in err and "inside the input folder" not in err and not Path("run").exists()


def test_one_image_is_scored_into_a_folder_beside_it(tiny_run, tmp_path, capsys, monkeypatch):
    """A photo in the current folder, results in a folder there: nothing of it is read back as input."""
    Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["predict", tiny_run, "a.png", "--out", "results"], capsys)
    assert code == 0, err
    assert (tmp_path / "results" / "overlays" / "a.png.png").is_file()


def test_the_folder_you_are_in_is_never_replaced_by_a_checkpoint(sample, tmp_path, capsys, monkeypatch):
    """--out . (or "", or a folder holding the current one) would swap the folder you stand in for a new one: refused
    before any work, your files untouched where they are."""
    here = tmp_path / "work" / "here"
    here.mkdir(parents=True)
    (here / "notes.txt").write_text("mine")
    inode = here.stat().st_ino
    monkeypatch.chdir(here)
    for out in (".", "..", str(here)):
        code, err = run_cli(["fit", sample, "--out", out, "--steps", "1", "--random-weights"], capsys)
        assert code == 2 and "the folder you are in" in err and len(err.strip().splitlines()) == 1, (out, err)
    code, err = run_cli(["fit", sample, "--out", "", "--steps", "1", "--random-weights"], capsys)
    assert code == 2 and "empty string" in err  # refused as it is parsed
    assert here.stat().st_ino == inode and sorted(p.name for p in here.iterdir()) == ["notes.txt"]


def test_a_fit_removes_what_a_killed_fit_left_beside_its_out(sample, tmp_path, capsys):
    """A fit killed while it wrote its checkpoint leaves the folder it was building beside --out (named by the
    library); the next fit into that --out holds it, and the checkpoint in --out is whole, so it removes the leftover
    and says so. An old checkpoint set aside (.old-) may be the one copy of it, and a look-alike is yours: both stay."""
    command = ["fit", sample, "--out", tmp_path / "run", "--steps", "1", "--random-weights", "--quiet"]
    assert run_cli(command, capsys)[0] == 0
    half, aside, yours = (tmp_path / name for name in (".run.new-0123456789", ".run.old-0123456789", ".run.new-mine"))
    for folder in (half / "sub", aside, yours):
        folder.mkdir(parents=True)
    code, out = main([str(a) for a in command + ["--overwrite"]]), capsys.readouterr().out
    assert code == 0 and f"removed {half}" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.new-mine", ".run.old-0123456789", "run"]
    load(tmp_path / "run")


def test_a_training_image_too_small_to_learn_from_is_named_in_one_line(sample, tmp_path, capsys):
    data = tmp_path / "good"
    data.mkdir()
    for image in sorted((sample / "train" / "good").glob("*.png"))[:3]:
        (data / image.name).write_bytes(image.read_bytes())
    Image.new("RGB", (1, 1)).save(data / "thumb.png")
    code, err = run_cli(["fit", data, "--out", tmp_path / "run", "--steps", "1", "--random-weights"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error")]  # beside the random weights' warning
    assert code == 2 and len(errors) == 1 and "thumb.png is 1x1 px" in errors[0] and not (tmp_path / "run").exists()


def test_an_argument_error_is_one_line(tmp_path, capsys):
    code, err = run_cli(["fit", tmp_path, "--steps", "0"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--steps" in err and "--help" in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_out_is_refused_before_training(sample, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    code, err = run_cli(["fit", sample, "--out", locked / "run", "--steps", "1"], capsys)
    assert code == 2 and "cannot be written" in err


def test_json_pointing_at_a_folder_is_refused_and_leaves_nothing(tiny_run, sample, tmp_path, capsys):
    folder = tmp_path / "metrics"
    folder.mkdir()
    code, err = run_cli(["evaluate", tiny_run, sample, "--json", folder], capsys)
    assert code == 2 and "is a folder" in err and not list(folder.iterdir()) and not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("lost", [METADATA, TENSORS])
def test_a_checkpoint_missing_one_file_is_named_in_one_line(tiny_run, sample, tmp_path, capsys, lost):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / lost).unlink()
    code, err = run_cli(["predict", run, sample / "test" / "good", "--out", tmp_path / "out"], capsys)
    assert code == 2 and f"{lost} is missing" in err and len(err.strip().splitlines()) == 1


def test_json_never_replaces_a_file_evaluate_did_not_write(tiny_run, sample, tmp_path, capsys):
    """--json over a checkpoint's model.json, a user's notes or anything inside the data: one line, the file as it
    was (the checkpoint still loads); over the metrics an earlier evaluate wrote: replaced."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    data = tmp_path / "data"
    shutil.copytree(sample, data)
    before = {path: path.read_bytes() for path in (run / METADATA, notes)}
    for target, said in ((run / METADATA, "not a metrics file"), (notes, "not a metrics file"),
                         (data / "metrics.json", "inside the input folder")):
        code, err = run_cli(["evaluate", run, data, "--json", target, "--quiet"], capsys)
        assert code == 2 and said in err and len(err.strip().splitlines()) == 1
    assert {path: path.read_bytes() for path in before} == before and not (data / "metrics.json").exists()
    load(run)
    metrics = tmp_path / "metrics.json"
    for _ in range(2):  # the second run replaces the record the first one wrote
        code, _ = run_cli(["evaluate", run, data, "--json", metrics, "--quiet"], capsys)
        assert code == 0 and "checkpoint_checksum" in json.loads(metrics.read_text())


def test_two_predict_runs_into_one_out_keep_both_rows_and_a_concurrent_one_is_refused(tiny_run, tmp_path, capsys):
    import csv
    import fcntl

    src = tmp_path / "in"
    src.mkdir()
    for name, size in (("a.png", (40, 30)), ("a.jpg", (30, 40))):
        Image.fromarray((np.random.default_rng(0).random((*size, 3)) * 255).astype(np.uint8)).save(src / name)
    out = tmp_path / "out"
    assert run_cli(["predict", tiny_run, src / "a.png", "--out", out], capsys)[0] == 0
    assert run_cli(["predict", tiny_run, src / "a.jpg", "--out", out], capsys)[0] == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert sorted(Path(r["path"]).name for r in rows) == ["a.jpg", "a.png"]  # both runs' rows kept
    assert {p.name for p in (out / "overlays").iterdir()} == {"a.png.png", "a.jpg.png"}  # no collision
    assert sorted(p.name for p in out.iterdir()) == ["overlays", "scores.csv"]  # results only: the lock went too
    with open(out / ".hlgfa.lock", "w") as held:  # another run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        code, err = run_cli(["predict", tiny_run, src / "a.png", "--out", out], capsys)
    assert code == 2 and "another hlgfa-lite run" in err


def test_a_later_predict_never_overwrites_an_earlier_images_result_nor_mixes_in_another_checkpoints(
        tiny_run, tmp_path, capsys):
    """Two folders' x.png into one --out in two runs: the second would overwrite the first's overlay while the table
    still named the first image, so it is refused; so is a run of another checkpoint, whose scores mean other things.
    The same image again is scored again, its row replaced."""
    import csv

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(
            tmp_path / folder / "x.png")
    out = tmp_path / "out"
    assert run_cli(["predict", tiny_run, tmp_path / "a" / "x.png", "--out", out], capsys)[0] == 0
    before = (out / "overlays" / "x.png.png").read_bytes()
    code, err = run_cli(["predict", tiny_run, tmp_path / "b" / "x.png", "--out", out], capsys)
    assert code == 2 and "is the result of" in err and str(tmp_path / "a" / "x.png") in err
    assert (out / "overlays" / "x.png.png").read_bytes() == before
    assert run_cli(["predict", tiny_run, tmp_path / "a" / "x.png", "--out", out], capsys)[0] == 0  # the same image
    assert len(list(csv.DictReader((out / "scores.csv").open()))) == 1
    other = copy_run(tiny_run, tmp_path / "other")
    meta = json.loads((other / METADATA).read_text())
    meta["calibration"]["image_threshold"] *= 1.01  # another head's calibration: another checksum
    meta["checksum"] = checksum(meta)
    (other / METADATA).write_text(json.dumps(meta))
    code, err = run_cli(["predict", other, tmp_path / "a" / "x.png", "--out", out], capsys)
    assert code == 2 and "another checkpoint" in err


def test_a_scores_table_from_before_the_overlay_and_checkpoint_columns_is_kept(tiny_run, tmp_path, capsys):
    import csv

    out = tmp_path / "out"
    out.mkdir()
    (out / "scores.csv").write_text("path,score,verdict,is_anomalous,threshold,sensitivity\n"
                                    "old.png,1.0,normal,False,2.0,1.0\n")
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "new.png")
    assert run_cli(["predict", tiny_run, tmp_path / "new.png", "--out", out], capsys)[0] == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert [Path(r["path"]).name for r in rows] == ["old.png", "new.png"] and rows[0]["overlay"] == ""


def test_a_second_fit_into_the_same_out_is_refused_at_its_start_and_the_lock_goes_with_the_run(sample, tmp_path,
                                                                                                capsys):
    import fcntl

    out = tmp_path / "run"
    with open(tmp_path / ".run.hlgfa.lock", "w") as held:  # a fit into run/ is under way
        fcntl.flock(held, fcntl.LOCK_EX)
        code, err = run_cli(["fit", sample, "--out", out, "--steps", "1", "--random-weights"], capsys)
    assert code == 2 and "another hlgfa-lite run is writing into" in err and not out.exists()
    assert run_cli(["fit", sample, "--out", out, "--steps", "1", "--random-weights", "--quiet"], capsys)[0] == 0
    assert (out / METADATA).is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_interrupted_predict_lists_every_image_it_wrote_and_leaves_no_partial_file(tiny_run, tmp_path, capsys,
                                                                                     monkeypatch):
    import csv

    from hlgfa_lite.model import HLGFA

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray((np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)).save(src / name)
    real_predict, calls = HLGFA.predict, []

    def predict(self, images):
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C while the third image is scored
            raise KeyboardInterrupt
        return real_predict(self, images)

    monkeypatch.setattr(HLGFA, "predict", predict)
    out = tmp_path / "out"
    code, err = run_cli(["predict", tiny_run, src, "--out", out, "--save-maps"], capsys)
    assert code == 130 and "interrupted" in err
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert sorted(Path(r["path"]).name for r in rows) == ["a.png", "b.png"]
    assert {p.name for p in (out / "overlays").iterdir()} == {"a.png.png", "b.png.png"}
    assert {p.name for p in (out / "maps").iterdir()} == {"a.png.npy", "b.png.npy"}


def test_several_images_and_folders_are_scored_in_one_run(tiny_run, tmp_path, capsys):
    """A shell's *.png gives predict many paths: each is scored once, named as alone; where two different images
    would share a name, every one is named by its path under the folder holding all the sources."""
    import csv

    for folder, name in (("a", "x.png"), ("a", "y.png"), ("b", "x.png"), ("c/deep", "z.png")):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)).save(
            tmp_path / folder / name)
    out = tmp_path / "out"
    a = tmp_path / "a"
    code, err = run_cli(["predict", tiny_run, a / "x.png", a / "y.png", a / "x.png", tmp_path / "c", "--out", out],
                        capsys)
    assert code == 0, err
    assert sorted(Path(r["path"]).name for r in csv.DictReader((out / "scores.csv").open())) == ["x.png", "y.png",
                                                                                                 "z.png"]
    assert {p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png")} == {
        "x.png.png", "y.png.png", "deep/z.png.png"}
    # test/good/000.png and test/broken/000.png: named by their paths under the folder holding both, not refused
    code, err = run_cli(["predict", tiny_run, a, tmp_path / "b" / "x.png", tmp_path / "c", "--out", tmp_path / "o2"],
                        capsys)
    assert code == 0, err
    assert {p.relative_to(tmp_path / "o2" / "overlays").as_posix() for p in (tmp_path / "o2").rglob("*.png")} == {
        "a/x.png.png", "a/y.png.png", "b/x.png.png", "c/deep/z.png.png"}


def test_a_predict_that_writes_nothing_leaves_no_table(tiny_run, tmp_path, capsys, monkeypatch):
    """A full disk at the first overlay: one line, and no scores.csv listing nothing."""
    import errno

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)).save(src / "a.png")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("hlgfa_lite.tools.visualize.save_png", full_disk)
    out = tmp_path / "out"
    code, err = run_cli(["predict", tiny_run, src, "--out", out], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error")]  # beside the tiny head's warning
    assert code == 2 and len(errors) == 1 and "No space left" in errors[0] and not (out / "scores.csv").exists()


@pytest.mark.parametrize("earlier", [
    "path,score,verdict,is_anomalous,threshold,sensitivity\nx.png,1.0,normal,False,2.0,1.0,extra\n",  # long row
    "path,score,verdict,is_anomalous,threshold,sensitivity\nx.png,1.0\n",  # short row
    "path,score,verdict,is_anomalous,threshold,sensitivity\nx.png,high,normal,False,2.0,1.0\n",
    "path,score,verdict,is_anomalous,threshold,sensitivity\nx.png,1.0,fine,False,2.0,1.0\n",
    "name,value\n",  # someone else's table
])
def test_a_malformed_earlier_scores_csv_is_refused_before_any_image_is_scored(tiny_run, sample, tmp_path, capsys,
                                                                                monkeypatch, earlier):
    out = tmp_path / "out"
    out.mkdir()
    (out / "scores.csv").write_text(earlier)
    scored = []
    monkeypatch.setattr(HLGFA, "predict", lambda self, images: scored.append(1))
    code, err = run_cli(["predict", tiny_run, sample / "test" / "good", "--out", out], capsys)
    assert code == 2 and "scores.csv" in err and "move it away" in err and len(err.strip().splitlines()) == 1
    assert scored == [] and sorted(p.name for p in out.iterdir()) == ["scores.csv"]
    assert (out / "scores.csv").read_text() == earlier


@pytest.mark.parametrize("in_the_way", ["maps", "overlays", "overlays/000.png.png/", "scores.csv/"])
def test_a_file_or_folder_in_the_way_is_refused_before_any_image_is_scored(tiny_run, sample, tmp_path, capsys,
                                                                            monkeypatch, in_the_way):
    out = tmp_path / "out"
    (out / in_the_way).parent.mkdir(parents=True, exist_ok=True)
    if in_the_way.endswith("/"):
        (out / in_the_way).mkdir()
    else:
        (out / in_the_way).write_text("the user's file")
    scored = []
    monkeypatch.setattr(HLGFA, "predict", lambda self, images: scored.append(1))
    code, err = run_cli(["predict", tiny_run, sample / "test" / "good", "--out", out, "--save-maps"], capsys)
    assert code == 2 and str(out / in_the_way.rstrip("/")) in err and "move it away" in err
    assert len(err.strip().splitlines()) == 1 and scored == []
    assert "--save-maps" in err if in_the_way == "maps" else True
    assert not (out / "overlays").exists() or in_the_way.startswith("overlays")


# --- images and masks -----------------------------------------------------------------------------------------
def test_decompression_bomb_is_one_line(tmp_path, tiny_run, capsys):
    (tmp_path / "in").mkdir()
    bomb = png_with_size(tmp_path / "in" / "bomb.png", 14000, 14000)  # 196 megapixels
    with pytest.raises(HLGFAError, match="million"):
        load_image(bomb)
    code, err = run_cli(["predict", tiny_run, bomb, "--out", tmp_path / "p"], capsys)
    errors = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]  # warnings: one line each
    assert code == 2 and "million" in err and len(errors) == 1


def test_big_images_are_downscaled_while_decoding(tmp_path):
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (9000, 300), (10, 200, 30)).save(path, quality=80)
    image = load_image(path, max_side=4096)
    assert max(image.shape[-2:]) <= 4096 and image.shape[0] == 3


@pytest.mark.parametrize("flagged, said", [(0.9, True), (0.5, True), (0.1, False)])
def test_evaluate_says_when_most_good_images_are_flagged(tiny_run, sample, capsys, monkeypatch, flagged, said):
    """A bottle checkpoint evaluated on tiles flags every good tile: the table alone (image_fpr 1.0) says it only to a
    reader who knows what image_fpr means."""
    from hlgfa_lite import evaluation

    monkeypatch.setattr(evaluation, "verdict_rates", lambda *a: {"image_fpr": flagged, "image_tpr": 1.0})
    assert main(["evaluate", str(tiny_run), str(sample), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (f"note: {flagged:.0%} of the good test images are flagged: the checkpoint was likely fitted on other "
            "parts or another capture; fit one on good images of these parts" in out) == said


def test_all_empty_masks_are_one_line(tiny_run, sample, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample, data)
    for mask in (data / "ground_truth").rglob("*.png"):
        Image.new("L", Image.open(mask).size).save(mask)
    code, err = run_cli(["evaluate", tiny_run, data], capsys)
    assert code == 2 and "empty" in err


@pytest.mark.parametrize("background, defect", [(0, 255), (0, 1), (1, 2), (100, 7)])
def test_a_mask_counts_what_differs_from_its_background_as_defect(tmp_path, background, defect):
    values = np.full((20, 20), background, dtype=np.uint8)
    values[5:9, 3:12] = defect
    Image.fromarray(values).save(tmp_path / "m.png")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        mask = load_mask(tmp_path / "m.png", (20, 20))
    assert mask.sum() == 36 and mask[5:9, 3:12].all()
    assert len(said) == (background != 0) and all(f"background value {background}" in str(w.message) for w in said)


@pytest.mark.parametrize("rows, marked", [(12, 240), (20, 400)])
def test_a_defect_over_half_the_image_is_still_the_defect_and_a_warning_says_so(tmp_path, rows, marked):
    """0 is good wherever a mask holds a 0, however large its defect (60 % of the image, or all of it in a mask that
    is 255 everywhere): non-zero is defect, as README says; a mask marking over half of its image gets one line, as
    an inverted mask (white for good pixels) would."""
    values = np.zeros((20, 20), dtype=np.uint8)
    values[:rows] = 255
    Image.fromarray(values).save(tmp_path / "m.png")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        mask = load_mask(tmp_path / "m.png", (20, 20))
    assert mask.sum() == marked and mask[:rows].all()
    assert len(said) == 1 and "over half of their image" in str(said[0].message)


def test_a_mask_of_another_shape_than_its_image_is_refused_and_one_of_the_same_shape_is_resized(tmp_path):
    values = np.zeros((10, 10), dtype=np.uint8)
    values[2:4, 2:4] = 255
    Image.fromarray(values).save(tmp_path / "square.png")
    with pytest.raises(HLGFAError, match="different shape from its image"):
        load_mask(tmp_path / "square.png", (600, 800))
    assert load_mask(tmp_path / "square.png", (40, 40)).sum() == 8 * 8  # same shape, four times the size


def test_evaluate_with_label_map_masks_gives_the_binary_masks_numbers_and_one_warning(tiny_run, sample, tmp_path,
                                                                                        capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample, data)
    for mask in (data / "ground_truth").rglob("*.png"):  # background 1, defect 2: an exported label map
        Image.fromarray((np.asarray(Image.open(mask).convert("L")) > 0).astype(np.uint8) + 1).save(mask)
    said = {}
    for folder, name in ((sample, "binary"), (data, "offset")):
        code, err = run_cli(["evaluate", tiny_run, folder, "--json", tmp_path / f"{name}.json", "--quiet"], capsys)
        said[name] = [line for line in err.splitlines() if "masks" in line]
        assert code == 0 and all(line.startswith("warning: ") for line in err.splitlines())  # no source lines
    binary, offset = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("binary", "offset"))
    assert offset["pixel_auroc"] == binary["pixel_auroc"] and offset["pixel_aupro"] == binary["pixel_aupro"]
    assert said["binary"] == [] and len(said["offset"]) == 1  # one line, no Python source line beneath it
    assert said["offset"][0].startswith("warning: 9 of 9 masks") and "background value 1" in said["offset"][0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=600))
def test_image_and_mask_loaders_never_raise_anything_else(tmp_path, blob):
    """Arbitrary bytes (often a PNG header glued to noise): a tensor in [0, 1] or one HLGFAError, nothing else."""
    path = tmp_path / "x.png"
    path.write_bytes(blob[:8].rjust(8, b"\x89") if len(blob) < 8 else (b"\x89PNG\r\n\x1a\n" + blob[8:]
                                                                       if blob[0] % 2 else blob))
    for read in (lambda: load_image(path), lambda: load_mask(path, (8, 8))):
        try:
            value = read()
        except HLGFAError:
            continue
        assert torch.isfinite(value.float()).all() and value.float().min() >= 0 and value.float().max() <= 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 70), st.integers(1, 70), st.sampled_from(["L", "RGB", "RGBA", "I;16", "P", "1", "CMYK", "F"]))
def test_any_valid_image_loads_in_unit_range(tmp_path, width, height, mode):
    path = tmp_path / ("x.tiff" if mode in ("F", "CMYK") else "x.png")
    Image.new(mode, (width, height)).save(path)
    image = load_image(path)
    assert image.shape == (3, height, width) and image.min() >= 0 and image.max() <= 1


# --- checkpoints ----------------------------------------------------------------------------------------------
def copy_run(run: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for p in run.iterdir():
        (target / p.name).write_bytes(p.read_bytes())
    return target


def resign(run: Path, **changes) -> None:
    meta = {**json.loads((run / METADATA).read_text()), **changes}
    meta["checksum"] = checksum(meta)
    (run / METADATA).write_text(json.dumps(meta))


@pytest.mark.parametrize("field, value, words", [
    ("calibration.image_threshold", float("nan"), "not valid JSON"),  # NaN / Infinity tokens are refused
    ("calibration.image_threshold", float("inf"), "not valid JSON"),
    ("calibration.image_threshold", -1.0, "ordered"),
    ("calibration.map_vmax", -5.0, "map_vmax"),
    ("calibration.n_images", "21", "n_images"),
    ("format_version", 99, "written by a newer hlgfa_lite: upgrade"),
    ("format_version", 1, "scripts/resave_checkpoint.py"),
    ("config.steps", -3, "steps"),
    ("config.steps", 10 ** 9, r"steps .*in \[1, 1000000\]"),  # a plan of reads of gigabytes, refused
    ("config.batch_size", 100_000, "batch_size"),
    ("config.holdout_fraction", 2.0, "holdout_fraction"),
    ("config.smooth_sigma", "4", "smooth_sigma"),
    ("hr_size", "512", "hr_size"),
])
def test_every_field_is_range_checked_even_with_a_valid_checksum(tiny_run, tmp_path, field, value, words):
    run = copy_run(tiny_run, tmp_path / "run")
    meta = json.loads((run / METADATA).read_text())
    section, _, key = field.rpartition(".")
    if section:
        meta[section][key] = value
    else:
        meta[key] = value
    meta["checksum"] = checksum(meta)
    (run / METADATA).write_text(json.dumps(meta))  # NaN/inf are written as bare tokens, as a careless tool would
    with pytest.raises(HLGFAError, match=words):
        load(run, pretrained=False)


@pytest.mark.parametrize("changes, words", [
    ({"calibration.image_threshold": 1e300}, "image_threshold is 1e\\+300, beyond"),  # every image normal
    ({"calibration.good_score_center": -3.0, "calibration.borderline_threshold": -2.0,
      "calibration.image_threshold": -1.0}, "image_threshold is -1, but a log-normal bound is positive"),
    ({"calibration.map_vmax": 1e12}, "map_vmax is 1e\\+12, beyond"),
    ({"calibration.good_score_center": 1.15, "calibration.good_score_max": 1.1}, "above good_score_max"),
    ({"calibration.target_fpr": 0.7}, "target_fpr must be in"),
    ({"calibration.confidence": 0.2}, "confidence must be in"),
    ({"calibration.method": "guess"}, "method must be one of"),
    ({"config.hr_size": 8192, "config.lr_size": 4096, "hr_size": 8192, "lr_size": 4096}, "hr_size must be in"),
    ({"config.out_indices": [1, 2, 9]}, "out_indices \\[1, 2, 9\\] names a level"),
])
def test_values_no_fit_can_produce_are_refused_even_with_a_valid_checksum(tiny_run, tmp_path, changes, words):
    run = copy_run(tiny_run, tmp_path / "run")
    meta = json.loads((run / METADATA).read_text())
    for field, value in changes.items():
        section, _, key = field.rpartition(".")
        (meta[section] if section else meta)[key] = value
    resign(run, **meta)
    with pytest.raises(HLGFAError, match=words) as refused:
        load(run, pretrained=False)
    assert "\n" not in str(refused.value)


def test_a_config_field_every_checkpoint_has_is_required_and_a_later_one_takes_its_earlier_value(tiny_run, tmp_path):
    """A checkpoint of this format lacking `prior_sigma` was damaged or edited: today's default would change its
    maps in silence. One written before `head_draws` existed lacks it, and loads as it was fitted (all draws)."""
    from hlgfa_lite.config import BEFORE_THE_FIELD

    run = copy_run(tiny_run, tmp_path / "run")
    meta = json.loads((run / METADATA).read_text())
    assert set(BEFORE_THE_FIELD) <= set(meta["config"])  # what this version writes has every field
    del meta["config"]["prior_sigma"]
    resign(run, **meta)
    with pytest.raises(HLGFAError, match="config field prior_sigma is missing; the checkpoint is damaged"):
        load(run, pretrained=False)
    meta["config"]["prior_sigma"] = 2.0
    del meta["config"]["head_draws"]
    resign(run, **meta)
    assert load(run, pretrained=False).cfg.head_draws == 0 == BEFORE_THE_FIELD["head_draws"]


def test_a_normality_precision_with_a_negative_variance_is_refused(tiny_run, tmp_path):
    from safetensors.torch import load_file, save_file

    run = copy_run(tiny_run, tmp_path / "run")
    tensors = load_file(str(run / TENSORS))
    name = next(k for k in tensors if k.endswith(".precision"))
    tensors[name][0, 0, 0] = -1.0
    save_file(tensors, str(run / TENSORS))
    resign(run, tensors_sha256=__import__("hashlib").sha256((run / TENSORS).read_bytes()).hexdigest())
    with pytest.raises(HLGFAError, match=f"{name} must have a positive diagonal"):
        load(run, pretrained=False)


def test_nan_or_zero_level_statistics_are_refused(tmp_path):
    for name, value in (("level_scale", 0.0), ("level_scale", float("nan")), ("level_mean", float("inf"))):
        model = tiny_model()
        getattr(model, name)[0] = value
        if any(not torch.isfinite(t).all() for t in (model.level_mean, model.level_scale)):
            with pytest.raises(HLGFAError, match="NaN or infinite"):
                save(model, tmp_path / f"{name}{value}")
            continue
        run = save(model, tmp_path / f"{name}{value}")
        with pytest.raises(HLGFAError, match=name):
            load(run, pretrained=False)


def test_deep_or_huge_or_corrupt_files_are_one_line(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    (run / METADATA).write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(HLGFAError, match="JSON|nested|object"):
        load(run, pretrained=False)
    (run / METADATA).write_text(json.dumps({"a": [[[[[[[[[[[[1]]]]]]]]]]]]}))
    with pytest.raises(HLGFAError):
        load(run, pretrained=False)
    copy_run(tiny_run, run)
    (run / TENSORS).write_bytes(b"\xff" * 64)
    resign(run, tensors_sha256=__import__("hashlib").sha256(b"\xff" * 64).hexdigest())
    with pytest.raises(HLGFAError, match="cannot be read|damaged"):
        load(run, pretrained=False)
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"garbage")
    code, err = run_cli(["predict", tiny_run, tmp_path, "--out", tmp_path / "p", "--weights", weights], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_checkpoint_loader_under_random_tampering(tiny_run, tmp_path, data):
    """Any byte of either file changed: refused with one HLGFAError (the checksum or hash), or unchanged model."""
    run = copy_run(tiny_run, tmp_path / "fuzz")
    target = run / data.draw(st.sampled_from([METADATA, TENSORS]))
    blob = bytearray(target.read_bytes())
    where = data.draw(st.integers(0, len(blob) - 1))
    blob[where] = data.draw(st.integers(0, 255))
    target.write_bytes(bytes(blob))
    try:
        model = load(run, pretrained=False)
    except HLGFAError:
        return
    reference = load(tiny_run, pretrained=False)  # a change that JSON ignores (e.g. whitespace) changes nothing
    assert model.calibration == reference.calibration
    for a, b in zip(model.head.state_dict().values(), reference.head.state_dict().values()):
        assert torch.equal(a, b)


def test_nan_scores_are_an_error_never_normal(tiny_run, sample, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(HLGFA, "predict", lambda self, images: [(torch.zeros(4, 4), float("nan"))])
    code, err = run_cli(["predict", tiny_run, sample / "test" / "good", "--out", tmp_path / "p"], capsys)
    assert code == 2 and "nan" in err.lower()


# --- a crash at any moment of an overwrite leaves a loadable checkpoint ----------------------------------------
CRASHER = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    import shutil
    import hlgfa_lite.tools.checkpoint as ck
    import hlgfa_lite.tools.files as files
    from test_reliability import tiny_model
    step, target = 0, int(sys.argv[1])

    def counted(name, real):
        def call(*args, **kwargs):
            global step
            step += 1
            if step == target:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return call

    for name in ("sync_tree", "fsync_dir", "exchange"):
        setattr(files, name, counted(name, getattr(files, name)))
    ck.write_checkpoint = counted("write_checkpoint", ck.write_checkpoint)
    os.rename = counted("rename", os.rename)
    os.replace = counted("replace", os.replace)
    shutil.rmtree = counted("rmtree", shutil.rmtree)
    ck.save(tiny_model(seed=1), sys.argv[2], overwrite=True)
    print("completed")
""")


def test_a_kill_at_any_step_of_an_overwrite_leaves_old_or_new(tmp_path):
    old_run = save(tiny_model(seed=0), tmp_path / "run")
    old_head = load(old_run, pretrained=False).head.state_dict()
    new_head = tiny_model(seed=1).head.state_dict()
    script = tmp_path / "crash.py"
    script.write_text(CRASHER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    seen = set()
    for target in range(1, 30):
        done = subprocess.run([sys.executable, str(script), str(target), str(old_run)], env=env,
                              capture_output=True, text=True, timeout=600)
        completed = "completed" in done.stdout
        assert completed or done.returncode == -signal.SIGKILL, done.stderr[-500:]
        head = load(old_run, pretrained=False).head.state_dict()  # must load, whatever moment the kill hit
        is_old = all(torch.equal(head[k], old_head[k]) for k in head)
        is_new = all(torch.equal(head[k], new_head[k]) for k in head)
        assert is_old or is_new
        seen.add("new" if is_new else "old")
        if completed:
            break
        if is_new:  # the kill came after the swap: start the next round from an old checkpoint again
            save(tiny_model(seed=0), old_run, overwrite=True)
    assert completed and seen == {"old", "new"} and target > 3
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")]
    assert len(leftovers) <= target  # killed saves may leave their own temporary folders, never a broken run


def test_a_first_save_into_a_users_folder_leaves_its_files_where_they_are(tmp_path):
    """`mkdir runs/b; hlgfa-lite fit ... --out runs/b | tee runs/b/fit.log`: the log is open while the checkpoint is
    saved. Only the checkpoint's two files are written: the folder and the user's files stay the same files (same
    inodes, links kept), so what is written to them after the save is not lost."""
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "elsewhere.txt").write_text("linked")
    os.link(tmp_path / "elsewhere.txt", run / "linked.txt")
    folder_before = os.stat(run).st_ino
    with open(run / "fit.log", "a") as log:
        log.write("before the save\n")
        log.flush()
        save(tiny_model(seed=0), run)
        log.write("after the save\n")
    assert (run / "fit.log").read_text() == "before the save\nafter the save\n"
    assert os.stat(run).st_ino == folder_before and os.stat(run / "linked.txt").st_nlink == 2
    assert load(run, pretrained=False).calibrated is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.txt", "run"]  # no staging left beside it


def test_overwrite_keeps_the_users_other_files(tmp_path):
    run = save(tiny_model(seed=0), tmp_path / "run")
    (run / "metrics.json").write_text("{}")
    save(tiny_model(seed=1), run, overwrite=True)
    assert (run / "metrics.json").read_text() == "{}"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


def test_what_is_not_a_list_of_images_or_a_score_is_one_line():
    model = tiny_model()
    for wrong, words in ((None, "got NoneType"), ("x.png", "got str"), ([torch.rand(3, 0, 10)], "must have pixels")):
        with pytest.raises(HLGFAError, match=words):
            model.predict(wrong)
    for wrong in ([0.5, 0.6], "0.5", None, True):
        with pytest.raises(HLGFAError, match="verdict takes one image's score"):
            model.verdict(wrong)
    assert model.verdict(torch.tensor(0.0)) == model.verdict(np.float32(0.0)) == model.verdict(np.array([0.0])) \
        == model.verdict(0) == "normal"


@pytest.mark.parametrize("make, words", [
    (lambda img: img * 255, "divide 0-255 images by 255"),
    (lambda img: (img * 255).to(torch.uint8), "images.float() / 255"),
    (lambda img: (img - 0.45) / 0.22, "applies its own ImageNet normalisation"),
    (lambda img: img.permute(1, 2, 0), "image.permute(2, 0, 1)"),
    (lambda img: torch.cat([img, img[:1]]), "drop the alpha channel"),
    (lambda img: img.permute(1, 2, 0).numpy(), "torch.from_numpy"),
    (lambda img: "x.png", "load_image"),
    (lambda img: img.index_fill(2, torch.tensor([5]), float("nan")), "NaN or infinite"),
    (lambda img: img.index_fill(1, torch.tensor([0]), float("inf")), "NaN or infinite"),
])
def test_images_the_model_cannot_read_are_one_line_saying_what_to_change(make, words):
    """The Python API's images are float tensors in [0, 1], 3 channels (or 1) first: 0-255 values, 8-bit or
    normalised tensors, channels last, an alpha channel, arrays, paths and NaN pixels each get a line that says what to
    change, where they used to score as an anomaly everywhere, as normal, or end in a traceback inside the backbone."""
    model, image = tiny_model(), torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0))
    with pytest.raises(HLGFAError, match=re.escape(words)):
        model.predict([make(image)])
    if isinstance(make(image), torch.Tensor) and make(image).dim() == 3:  # a batch of it, to score_batch
        batched = words.replace("image.permute(2, 0, 1)", "images.permute(0, 3, 1, 2)")
        with pytest.raises(HLGFAError, match=re.escape(batched)):
            model.score_batch(make(image)[None])
    assert model.predict([image.double()])[0][0].shape == (40, 56)  # any float dtype is read as the model's own
    assert model.predict([image[:1]])[0][1] == pytest.approx(model.predict([image[:1].expand(3, -1, -1)])[0][1])


def test_predict_wants_a_list_and_a_fitted_model():
    model, image = tiny_model(), torch.rand(3, 40, 56)
    with pytest.raises(HLGFAError, match="list of"):
        model.predict(image)
    with pytest.raises(HLGFAError, match="add the batch dimension"):
        model.inspect(image)
    model.calibration = None
    with pytest.raises(HLGFAError, match="not calibrated"):
        model.predict([image])
    assert model.inspect(image[None]).anomaly_map.shape == (1, 32, 32)  # an unfitted model's maps, as lessons show


def test_fit_takes_a_folder_or_image_files_and_names_what_is_neither(sample, tmp_path):
    from hlgfa_lite import fit
    from hlgfa_lite.training import good_image_paths
    from hlgfa_lite.data import train_image_paths

    assert good_image_paths(str(sample)) == good_image_paths(sample) == train_image_paths(sample)
    files = train_image_paths(sample)[:3]
    assert good_image_paths(f for f in files) == files
    for paths, words in [([sample], "is a folder"), ([tmp_path / "gone.png", *files], "not found"),
                         (files[:1], "at least 2"), (tmp_path / "none", "is not a folder")]:
        with pytest.raises(HLGFAError, match=words):
            fit(tiny_model(), paths, progress=False, say=None)


def test_loading_onto_a_device_this_machine_lacks_is_one_line(tiny_run):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(HLGFAError, match="no CUDA GPU"):
        load(tiny_run, device="cuda")


@pytest.mark.parametrize("changes, words", [
    ({"stepz": 5}, r"unknown config field 'stepz' \(did you mean steps\?\)"),
    ({"epochs": 3}, r"unknown config field 'epochs'; every field is listed in hlgfa_lite/config.py"),
    ({"steps": 5.5}, r"config field steps must be like 500, got 5.5"),
    ({"seed": "0"}, r"config field seed must be in \[0, 2\*\*63\), got '0'"),
    ({"seed": -1}, r"config field seed must be in \[0, 2\*\*63\)"),
    ({"backbone": 5}, r"config field backbone must be like 'tf_efficientnet_lite0', got 5"),
    ({"noise_aug": "yes"}, r"config field noise_aug must be like True, got 'yes'"),
])
def test_a_preset_refuses_unknown_fields_and_wrong_types_in_one_line(changes, words):
    """`preset("lite", stepz=5)` raised dataclasses' TypeError; `steps=5.5` or `backbone=5` were taken, the latter
    to fail later inside timm."""
    from hlgfa_lite import preset

    with pytest.raises(HLGFAError, match=words) as refused:
        preset("lite", **changes)
    assert "\n" not in str(refused.value)


def test_a_preset_takes_an_int_for_a_float_and_a_list_for_a_tuple():
    from hlgfa_lite import preset

    cfg = preset("lite", prior_width=1, out_indices=[1, 2])
    assert cfg.prior_width == 1 and cfg.out_indices == (1, 2)


def test_the_api_names_what_is_wrong_with_a_path_or_a_config():
    """A user's first calls with a wrong argument: one HLGFAError saying what to give, not a TypeError from pathlib
    or an AttributeError from inside the model; a missing file is not "damaged"."""
    import tempfile

    from hlgfa_lite import HLGFA, load, load_image

    for call, words in [(lambda: load(None), "a checkpoint folder's path must be a str or pathlib.Path, got NoneType"),
                        (lambda: load(3), "must be a str or pathlib.Path, got int"),
                        (lambda: load_image(None), "an image path must be a str or pathlib.Path, got NoneType"),
                        (lambda: load_image("no-such-image.png"), "image no-such-image.png does not exist"),
                        (lambda: load_image(tempfile.gettempdir()), "is a folder; give an image file in it"),
                        (lambda: HLGFA("lite"), r"HLGFA takes a config, e.g. HLGFA\(preset\('lite'\)\), got str"),
                        (lambda: HLGFA(None), r"HLGFA takes a config, e.g. HLGFA\(preset\('lite'\)\), got NoneType")]:
        with pytest.raises(HLGFAError, match=words):
            call()


def test_a_low_view_is_checked_like_the_images(capsys):
    from hlgfa_lite import HLGFA, preset

    model = HLGFA(preset("lite", hr_size=128, lr_size=64), pretrained=False)
    images = torch.rand(1, 3, 80, 80)
    with pytest.raises(HLGFAError, match="got values from .* to 255; divide 0-255 images by 255"):
        model.inspect(images, low_view=images * 255)
    with pytest.raises(HLGFAError, match="NaN"):
        model.inspect(images, low_view=torch.full((1, 3, 40, 40), float("nan")))
    with pytest.raises(HLGFAError, match=r"low_view holds 2 image\(s\) for 1 image\(s\)"):
        model.inspect(images, low_view=torch.rand(2, 3, 40, 40))
    assert model.inspect(images, low_view=torch.rand(1, 3, 40, 40)).anomaly_map.shape == (1, 64, 64)
