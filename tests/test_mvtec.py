"""The MVTec-AD-wide runner on a root that holds only bottle (the bundled sample): table, means, resume."""

import json
from pathlib import Path

import pytest

from hlgfa_lite import HLGFAError, __version__
from hlgfa_lite.tools import cli
from hlgfa_lite.tools.checkpoint import read_metadata
from hlgfa_lite.tools.mvtec import PAPER, run_all
from hlgfa_lite.assets import sample_dir

TINY = dict(hr_size=128, lr_size=64)  # the runner's bookkeeping is the point here, not the numbers


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvtec")
    (root / "bottle").symlink_to(sample_dir(), target_is_directory=True)
    (root / "notes").mkdir()  # not a category: ignored
    return root


@pytest.fixture(scope="module")
def first_run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mvtec"
    said: list[str] = []
    results = run_all(root, out, "lite", steps=3, overrides=TINY, say=said.append)
    return out, results, said


def test_every_category_found_gets_metrics_and_a_table_beside_the_paper(first_run):
    out, results, said = first_run
    assert list(results["categories"]) == ["bottle"]
    stored = json.loads((out / "bottle" / "metrics.json").read_text())
    assert stored["image_auroc"] == results["categories"]["bottle"]["image_auroc"] == results["mean"]["image_auroc"]
    table = (out / "results.md").read_text()
    assert f"| bottle | {100 * stored['image_auroc']:.1f} | {100 * stored['pixel_auroc']:.1f} |" in table
    assert "mean of 1" in table and f"| {100 * PAPER['image_auroc']:.1f} | {100 * PAPER['pixel_auroc']:.1f} |" in table
    assert "not comparable" in table
    assert any(line.startswith("bottle: fit holds") for line in said)  # fit said its memory plan


def test_a_second_run_resumes_without_refitting(root, first_run):
    out, results, _ = first_run
    model_file = out / "bottle" / "model" / "head.safetensors"
    before = model_file.stat().st_mtime_ns
    said: list[str] = []
    again = run_all(root, out, "lite", steps=3, overrides=TINY, say=said.append)
    assert any("done already" in line for line in said)
    assert model_file.stat().st_mtime_ns == before and again["mean"] == results["mean"]


def test_interrupted_after_the_fit_evaluates_the_saved_checkpoint(root, first_run):
    out, results, _ = first_run
    (out / "bottle" / "metrics.json").unlink()  # as if the runtime died during evaluation
    model_file = out / "bottle" / "model" / "head.safetensors"
    before = model_file.stat().st_mtime_ns
    said: list[str] = []
    again = run_all(root, out, "lite", steps=3, overrides=TINY, say=said.append)
    assert any("checkpoint found" in line for line in said) and model_file.stat().st_mtime_ns == before
    assert again["categories"]["bottle"]["pixel_auroc"] == results["categories"]["bottle"]["pixel_auroc"]


def test_a_root_without_categories_is_one_clear_line(tmp_path, capsys):
    assert cli.main(["mvtec", str(tmp_path), "--out", str(tmp_path / "out")]) == cli.EXIT_USAGE
    assert "holds no category" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- a resume reuses only what this very run made -----------------------------------------------------------------
def copy_out(out, tmp_path):
    import shutil

    return Path(shutil.copytree(out, tmp_path / "out", symlinks=True))


def edit_record(path, **changes):
    stored = json.loads(path.read_text())
    stored["made_by"] = {**stored["made_by"], **changes}
    path.write_text(json.dumps(stored))


def test_results_record_what_made_them_and_the_table_says_it(first_run):
    out, results, _ = first_run
    made = results["categories"]["bottle"]["made_by"]
    assert made["preset"] == "lite" and made["steps"] == 3 and made["seed"] == 0 and made["pretrained"] is True
    assert made["data"] == str(sample_dir().resolve()) and len(made["data_files_sha256"]) == 64
    assert made["package_version"] == __version__ and made["overrides"] == TINY
    assert json.loads((out / "bottle" / "fit.json").read_text())["made_by"] == made
    assert read_metadata(out / "bottle" / "model")["fit"]["made_by"] == made
    assert "lite preset, 3 steps, seed 0" in (out / "results.md").read_text().splitlines()[0]
    assert json.loads((out / "results.json").read_text())["made_by"]["steps"] == 3


@pytest.mark.parametrize("field, value, words", [
    ("preset", "paper", "preset 'paper', this run 'lite'"),
    ("steps", 500, "steps 500, this run 3"),
    ("seed", 7, "seed 7, this run 0"),
    ("pretrained", False, "pretrained False"),
    ("overrides", {}, "overrides {}"),
    ("data", "/elsewhere/bottle", "data '/elsewhere/bottle'"),
    ("data_files_sha256", "0" * 64, "changed since"),
    ("package_version", "0.0.1", "package_version '0.0.1'"),
])
def test_another_runs_metrics_stop_the_run_before_any_work(root, first_run, tmp_path, field, value, words):
    out = copy_out(first_run[0], tmp_path)
    edit_record(out / "bottle" / "metrics.json", **{field: value})
    before = (out / "bottle" / "metrics.json").read_bytes()
    said: list[str] = []
    with pytest.raises(HLGFAError, match="--overwrite") as stopped:
        run_all(root, out, "lite", steps=3, overrides=TINY, say=said.append)
    assert words in str(stopped.value) and "\n" not in str(stopped.value)
    assert said == [] and (out / "bottle" / "metrics.json").read_bytes() == before


def test_a_checkpoint_of_another_run_is_never_evaluated_as_this_one(root, first_run, tmp_path):
    out = copy_out(first_run[0], tmp_path)
    (out / "bottle" / "metrics.json").unlink()
    edit_record(out / "bottle" / "fit.json", preset="paper")  # what a stopped `--preset paper` run leaves
    with pytest.raises(HLGFAError, match="fit.json was fitted with preset 'paper'"):
        run_all(root, out, "lite", steps=3, overrides=TINY, say=print)


def test_overwrite_redoes_a_category_another_run_made(root, first_run, tmp_path):
    out = copy_out(first_run[0], tmp_path)
    edit_record(out / "bottle" / "metrics.json", steps=500)
    said: list[str] = []
    again = run_all(root, out, "lite", steps=3, overrides=TINY, say=said.append, overwrite=True)
    assert any("steps 500, this run 3: redoing it (--overwrite)" in line for line in said)
    assert again["categories"]["bottle"]["made_by"]["steps"] == 3
    assert json.loads((out / "bottle" / "metrics.json").read_text())["made_by"]["steps"] == 3


def test_a_different_data_root_is_not_reported_under_the_old_ones_numbers(first_run, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(sample_dir(), other / "bottle")
    out = copy_out(first_run[0], tmp_path)
    assert cli.main(["mvtec", str(other), "--out", str(out), "--steps", "3"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "data" in err and str(other / "bottle") in err and "--overwrite" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("damage", ['{"image_auroc": 0.9', "{}", "[]", '{"image_auroc": "high"}', "foreign"])
def test_a_damaged_or_foreign_metrics_file_is_reported_and_redone(root, first_run, tmp_path, damage):
    out = copy_out(first_run[0], tmp_path)
    metrics = out / "bottle" / "metrics.json"
    if damage == "foreign":  # the right numbers, but nothing says what made them
        damage = json.dumps({k: v for k, v in json.loads(metrics.read_text()).items() if k != "made_by"})
    metrics.write_text(damage)
    said: list[str] = []
    again = run_all(root, out, "lite", steps=3, overrides=TINY, say=said.append)
    assert any("metrics.json cannot be used" in line for line in said)
    assert any("checkpoint found" in line for line in said)  # its checkpoint and fit.json are sound: no refit
    assert again["categories"]["bottle"]["pixel_auroc"] == first_run[1]["categories"]["bottle"]["pixel_auroc"]
    assert json.loads(metrics.read_text())["made_by"] == first_run[1]["categories"]["bottle"]["made_by"]


def test_a_checkpoint_without_a_sound_record_is_refitted(root, first_run, tmp_path):
    out = copy_out(first_run[0], tmp_path)
    (out / "bottle" / "metrics.json").unlink()
    (out / "bottle" / "fit.json").write_text("{}")
    said: list[str] = []
    again = run_all(root, out, "lite", steps=3, overrides=TINY, say=said.append)
    assert any("record cannot be used" in line and "refitting" in line for line in said)
    assert json.loads((out / "bottle" / "fit.json").read_text())["made_by"] == again["categories"]["bottle"]["made_by"]


def test_out_inside_the_data_is_refused(tmp_path, capsys):
    import shutil

    data = tmp_path / "mvtec"
    shutil.copytree(sample_dir(), data / "bottle")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "bottle").symlink_to(data / "bottle", target_is_directory=True)
    for root, out in ((data, data), (data, data / "bottle" / "runs"), (linked, data / "bottle" / "runs")):
        assert cli.main(["mvtec", str(root), "--out", str(out), "--steps", "2"]) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert "inside the input folder" in err and len(err.splitlines()) == 1
    assert not (data / "bottle" / "runs").exists() and not (data / "bottle" / "model").exists()


@pytest.mark.parametrize("flag, value", [("--steps", "0"), ("--steps", "-1"), ("--steps", "2.5"), ("--seed", "-1"),
                                         ("--max-cache-gib", "0")])
def test_count_arguments_are_checked_as_in_fit(root, tmp_path, capsys, flag, value):
    for command in (["fit", str(root / "bottle")], ["mvtec", str(root)]):
        with pytest.raises(SystemExit) as exited:
            cli.main([*command, "--out", str(tmp_path / "out"), flag, value])
        assert exited.value.code == cli.EXIT_USAGE and f"argument {flag}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("steps", [0, -3, True, 2.0])
def test_run_all_refuses_a_step_count_fit_would_refuse(root, tmp_path, steps):
    with pytest.raises(HLGFAError, match="steps must be a whole number >= 1"):
        run_all(root, tmp_path / "out", steps=steps, say=print)
    assert not (tmp_path / "out").exists()


def test_only_the_categories_named_are_run_and_a_wrong_name_says_what_there_is(tmp_path):
    root = tmp_path / "mvtec"
    root.mkdir()
    for name in ("bottle", "tire"):
        (root / name).symlink_to(sample_dir(name), target_is_directory=True)
    said: list[str] = []
    results = run_all(root, tmp_path / "only", "lite", steps=3, overrides=TINY, say=said.append, only=["tire"])
    assert list(results["categories"]) == ["tire"] and any("[1/1] tire" in line for line in said)
    # a second subset into the same folder: the table keeps tire, done there earlier by the same settings
    again = run_all(root, tmp_path / "only", "lite", steps=3, overrides=TINY, say=said.append, only=iter(["bottle"]))
    assert list(again["categories"]) == ["bottle"] and "the table also holds tire" in said[-2]
    table = json.loads((tmp_path / "only" / "results.json").read_text())["categories"]
    assert sorted(table) == ["bottle", "tire"] and table["tire"] == results["categories"]["tire"]
    (root / "notes").mkdir()
    for wrong, said_back in ((["bottel"], r"has no category bottel; it has bottle, tire\."),
                             (["notes"], r"no category notes \(notes/ lacks train/good or test\)"),
                             ([""], "non-empty list of category names"), ([1], "non-empty list"), ("tire", "list")):
        with pytest.raises(HLGFAError, match=said_back):
            run_all(root, tmp_path / "typo", "lite", steps=3, overrides=TINY, say=said.append, only=wrong)
    assert not (tmp_path / "typo").exists()
    with pytest.raises(HLGFAError, match="it is a category itself"):
        run_all(root / "tire", tmp_path / "typo", "lite", steps=3, overrides=TINY, say=said.append)
