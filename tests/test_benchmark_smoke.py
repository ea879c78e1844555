"""benchmarks/run.py end to end on the bundled sample (tiny settings), its rendering, its bad-input errors, and every
benchmark and probe script's command line."""

import importlib
import json
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks
import benchmarks.probes
from benchmarks import render
from hlgfa_lite.data import load_test_split

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "2", "--hr-size", "256", "--lr-size", "128", "--seeds", "0", "--quiet"]
RUN_KEYS = {"image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "fit_seconds", "ms_per_image",
            "peak_rss_mb", "trainable_parameters", "state_bytes", "seed", "threshold", "fpr_good", "per_type"}


SCRIPTS = sorted(f"{package.__name__}.{info.name}" for package in (benchmarks, benchmarks.probes)
                 for info in pkgutil.iter_modules(package.__path__) if not info.ispkg)
LIBRARIES = {"benchmarks.harness", "benchmarks.probes.map_cache"}  # shared code, no command line


@pytest.fixture(scope="module")
def bench():
    return importlib.import_module("benchmarks.run")


@pytest.fixture(scope="module")
def smoke(bench, sample, tmp_path_factory):
    """Every variant once, in this process (no per-variant peak memory then), 2 steps at 256/128 px."""
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    assert bench.main([str(sample), *TINY, "--isolation", "none", "--out", str(out)]) == 0
    return out, json.loads(out.read_text())


def test_every_variant_has_every_number(bench, smoke, sample):
    out, results = smoke
    assert results["complete"] and results["machine"]["torch"]
    assert results["command"].startswith("python -m benchmarks.run ")
    [(name, dataset)] = results["datasets"].items()
    samples = load_test_split(sample)
    assert name == "bottle" and dataset["n_test_images"] == len(samples)
    assert dataset["n_test_defective"] == sum(s.label for s in samples) > 0
    runs = {run["variant"]: run for run in dataset["runs"]}
    assert list(runs) == list(bench.VARIANTS)
    for variant, run in runs.items():
        assert RUN_KEYS <= set(run), (variant, RUN_KEYS - set(run))
        assert run["peak_rss_mb"] is None  # shared process: no honest per-variant peak, so none is claimed
        for key in ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "fpr_good"):
            assert 0 <= run[key] <= 1, (variant, key)
        assert run["fit_seconds"] > 0 and run["ms_per_image"] > 0 and run["state_bytes"] > 0
        assert run["config"]["hr_size"] == 256 and run["config"]["steps"] == 2
    # each ablation really switched its part off, and only that part
    assert not runs["no_structure"]["config"]["use_structure"] and runs["no_structure"]["config"]["use_detail"]
    assert not runs["no_detail"]["config"]["use_detail"] and not runs["no_gate"]["config"]["use_gate"]
    assert not runs["no_noise_aug"]["config"]["noise_aug"] and runs["full"]["config"]["noise_aug"]
    assert runs["aug_low_only"]["config"]["aug_views"] == "low" and runs["full"]["config"]["aug_views"] == "both"
    assert runs["full"]["trainable_parameters"] > runs["no_detail"]["trainable_parameters"] > 0
    assert runs["training_free"]["trainable_parameters"] == runs["patchcore"]["trainable_parameters"] == 0
    assert runs["patchcore"]["state_bytes"] == runs["patchcore"]["bank_size"] * runs["patchcore"]["bank_dim"] * 4
    for variant in bench.DEFAULT_ROBUSTNESS:
        assert set(runs[variant]["robustness"]) == {"clean", *bench.NUISANCES}
    assert runs["no_gate"]["robustness"] is None


def test_outputs_are_written_and_rebuilt_from_the_json(smoke, tmp_path):
    out, results = smoke
    markdown = out.with_suffix(".md").read_text()
    for label in results["settings"]["variant_labels"].values():
        assert f"| {label} |" in markdown
    assert "Nuisance robustness" in markdown and "JPEG quality 30" in markdown
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert render.main([str(out), "--md", str(tmp_path / "again.md")]) == 0
    assert (tmp_path / "again.md").read_text() == markdown


def test_seeds_are_summarised_as_mean_and_sample_std():
    runs = [{"variant": "full", "seed": seed, "image_auroc": auroc, "ms_per_image": 100.0 + seed}
            for seed, auroc in [(0, 0.9), (1, 1.0)]]
    summary = render.summarise(runs)
    assert render.cell(summary["full"]["image_auroc"], "percent") == "95.0 ± 7.1"
    assert render.cell(summary["full"]["ms_per_image"], "ms") == "100 ± 1"
    assert summary["full"]["peak_rss_mb"] is None and render.cell(None, "mib") == "—"


def test_effects_are_paired_by_seed_and_runs_of_two_commands_pool():
    def run(variant, seed, pixel):
        return {"variant": variant, "seed": seed, "image_auroc": 1.0, "pixel_auroc": pixel, "pixel_aupro": None}

    # full varies a lot between seeds, the ablation follows it 1 point below: a clear effect with no spread
    first = {"command": "python -m benchmarks.run D --seeds 0", "complete": True, "total_seconds": 60,
             "settings": {"seeds": [0], "variant_labels": {"full": "F", "x": "X"}},
             "datasets": {"d": {"runs": [run("full", 0, 0.90), run("x", 0, 0.89)]}}, "machine": {}}
    second = {**first, "command": "python -m benchmarks.run D --seeds 1 2", "settings": {"seeds": [1, 2]},
              "datasets": {"d": {"runs": [run("full", 1, 0.98), run("x", 1, 0.97),
                                          run("full", 2, 0.94), run("x", 2, 0.93)]}}}
    merged = render.merge([first, second])
    assert merged["settings"]["seeds"] == [0, 1, 2] and merged["total_seconds"] == 120
    assert len(merged["datasets"]["d"]["runs"]) == 6 and len(first["datasets"]["d"]["runs"]) == 2  # inputs intact
    effect = render.paired_effects(merged["datasets"]["d"]["runs"])["x"]
    assert render.cell(effect["pixel_auroc"], "points") == "-1.0 ± 0.0"
    assert effect["image_auroc"][:2] == (0.0, 0.0) and effect["pixel_aupro"] is None
    # unpaired, the same numbers would show a spread four times the effect
    assert render.summarise(merged["datasets"]["d"]["runs"])["x"]["pixel_auroc"][1] > 0.03
    text = render.markdown(merged)
    assert "Commands (runs pooled)" in text and "--seeds 1 2" in text
    assert "| X | 3 | +0.0 ± 0.0 | -1.0 ± 0.0 | — |" in text


def test_an_isolated_variant_reports_its_own_peak_memory(bench, sample, tmp_path):
    out = tmp_path / "one.json"
    assert bench.main([str(sample), *TINY, "--variants", "patchcore", "--robustness-variants", "--out", str(out)]) == 0
    [run] = json.loads(out.read_text())["datasets"]["bottle"]["runs"]
    # the child's own high-water mark: more than what it held before fitting, and not the parent's peak
    assert 0 < run["setup_rss_mb"] < run["peak_rss_mb"] < 16 * 1024
    assert run["robustness"] is None


def mvtec_without_defects(sample, root):
    shutil.copytree(sample / "train", root / "train")
    shutil.copytree(sample / "test" / "good", root / "test" / "good")
    return root


@pytest.mark.parametrize("case, message", [
    ("plain", "not MVTec layout"),
    ("no_defects", "no defective images"),
    ("missing", "is not a folder"),
    ("bad_out", "must name a .json file"),
])
def test_bad_input_gives_one_line_and_exit_2(bench, sample, tmp_path, capsys, case, message):
    out = tmp_path / "results" / "x.json"
    data = tmp_path / "data"
    if case == "plain":  # a folder of images, fine for `fit`, but nothing to evaluate
        data.mkdir()
        shutil.copy(next((sample / "train" / "good").iterdir()), data / "a.png")
        shutil.copy(next((sample / "train" / "good").iterdir()), data / "b.png")
    elif case == "no_defects":
        mvtec_without_defects(sample, data)
    elif case == "bad_out":
        data, out = sample, tmp_path / "x.txt"
    code = bench.main([str(data), *TINY, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error:") and message in err, err
    assert not out.exists() and not out.with_suffix(".md").exists()


def test_script_runs_from_the_command_line(sample, tmp_path):
    """The documented invocation (``python -m`` from the repository root) reaches the same error handling."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", str(tmp_path / "nope"), "--quiet"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.strip().startswith("error:") and "Traceback" not in done.stderr


@pytest.mark.parametrize("name", sorted(set(SCRIPTS) - LIBRARIES))
def test_every_script_imports_and_explains_its_command_line(name, capsys):
    with pytest.raises(SystemExit) as done:
        importlib.import_module(name).main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {name}")
