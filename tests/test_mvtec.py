"""The MVTec-AD-wide runner on a root that holds only bottle (the bundled sample): table, means, resume."""

import json

import pytest

from hlgfa_lite import cli
from hlgfa_lite.mvtec import PAPER, run_all
from hlgfa_lite.samples import sample_dir

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
