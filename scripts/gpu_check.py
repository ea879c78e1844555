"""Check the GPU path end to end on the bundled sample; one line per check, exit status 1 if any failed.

    HF_HUB_OFFLINE=1 python scripts/gpu_check.py                    # on a CUDA machine (the default device)
    HF_HUB_OFFLINE=1 python scripts/gpu_check.py --device cpu --no-lessons   # a quick dry run anywhere

Checks: fit a lite head for a few dozen steps, evaluate it, predict through the CLI, the demo's inspect and
look-inside on that device, a paper-preset fit (random weights: its memory path, not its accuracy), and every
lesson in FAST mode with ``HLGFA_DEVICE`` set to the device. Paste its output into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Checks:
    """Each check of the GPU path; a method returns one line of detail or raises."""

    def __init__(self, device: str, steps: int, work: Path):
        self.device, self.steps, self.work, self.model = device, steps, work, None

    def fit_lite(self):
        from hlgfa_lite import HLGFA, fit, preset, train_image_paths
        from hlgfa_lite.assets import sample_dir

        model = HLGFA(preset("lite", steps=self.steps)).to(self.device)
        report = fit(model, train_image_paths(sample_dir()), progress=False)
        assert str(model.device).startswith(self.device.split(":")[0]), f"model on {model.device}"
        self.model = model
        return f"{self.steps} steps, loss {report.losses[0]:.3f} -> {report.losses[-1]:.3f}"

    def evaluate_lite(self):
        from hlgfa_lite.evaluation import evaluate
        from hlgfa_lite.assets import sample_dir

        metrics = evaluate(self.model, sample_dir(), progress=False).metrics
        return f"image AUROC {metrics['image_auroc']:.3f}, pixel AUROC {metrics['pixel_auroc']:.3f} (sample)"

    def predict_cli(self):
        from hlgfa_lite.tools import cli
        from hlgfa_lite.tools.checkpoint import save
        from hlgfa_lite.assets import sample_dir

        save(self.model, self.work / "run")
        code = cli.main(["predict", str(self.work / "run"), str(sample_dir() / "test"), "--out",
                         str(self.work / "pred"), "--device", self.device, "--quiet"])
        assert code == 0, f"exit code {code}"
        rows = (self.work / "pred" / "scores.csv").read_text().splitlines()[1:]
        return f"{len(rows)} images scored, overlays written"

    def demo(self):
        from hlgfa_lite.demo import examples as demo_examples
        from hlgfa_lite.demo import models, rendering, uploads

        store = models.ModelStore(device=self.device)
        good, defect = demo_examples.example_images()[0][1], demo_examples.example_images()[1][1]
        verdicts = [rendering.render(store.model, rendering.inspect_image(store.model, uploads.read_upload(p))).verdict
                    for p in (good, defect)]
        figure = rendering.look_inside(store.model, uploads.read_upload(defect))
        assert "Normal" in verdicts[0] and "Anomalous" in verdicts[1], verdicts
        return f"bundled model: good -> normal, defect -> anomalous; look-inside {len(figure)} figures"

    def fit_paper(self):
        import torch

        from hlgfa_lite import HLGFA, fit, preset, train_image_paths
        from hlgfa_lite.assets import sample_dir

        model = HLGFA(preset("paper", steps=5), pretrained=False).to(self.device)
        report = fit(model, train_image_paths(sample_dir()), progress=False)
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.device.startswith("cuda") else float("nan")
        return f"5 steps, random weights, loss {report.losses[-1]:.3f}, peak GPU memory {peak:.1f} GiB"

    def lessons(self):
        env = dict(os.environ, HLGFA_DEVICE=self.device)
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebooks.py"), "--fast"], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "all lessons ran"


def run_check(label: str, check) -> bool:
    """Run one check, print PASS or FAIL with its time and detail; True when it passed."""
    started = time.perf_counter()
    try:
        detail = check()
        print(f"PASS  {label:<28} {time.perf_counter() - started:7.1f} s  {detail}", flush=True)
        return True
    except Exception as exc:  # noqa: BLE001 - every check reports, whatever breaks
        print(f"FAIL  {label:<28} {time.perf_counter() - started:7.1f} s  {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc(file=sys.stderr)
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--no-lessons", action="store_true", help="skip running the lessons")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from hlgfa_lite.device import resolve_device
    from hlgfa_lite.assets import sample_dir

    device = resolve_device(args.device)
    checks = Checks(device, args.steps, Path(tempfile.mkdtemp(prefix="hlgfa_gpu_check_")))
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else device
    print(f"gpu_check: device {device} ({name}), torch {torch.__version__}, sample {sample_dir().name}")
    results = [run_check("fit (lite, sample)", checks.fit_lite)]
    if checks.model is not None:
        results += [run_check("evaluate (sample)", checks.evaluate_lite),
                    run_check("predict (CLI)", checks.predict_cli)]
    results += [run_check("demo inspect + look inside", checks.demo),
                run_check("fit (paper, random weights)", checks.fit_paper)]
    if not args.no_lessons:
        results.append(run_check("lessons, FAST mode", checks.lessons))
    failures = results.count(False)
    print(f"gpu_check: {'all checks passed' if not failures else f'{failures} check(s) failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
