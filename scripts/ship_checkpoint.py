"""Ship a fitted checkpoint inside the package, with the metrics of the very copy that ships.

    python scripts/ship_checkpoint.py /tmp/fits/tire_lite tire_lite ../shared/data/mvtec3d_tire/tire --preset lite

The checkpoint (made by ``hlgfa-lite fit DATA --preset lite --seed 0 --out RUN``) is re-saved compact
(``checkpoint.compact_state``: half precision, each precision matrix as its upper triangle) into
``hlgfa_lite/assets/checkpoints/NAME``; its fit record keeps every fact but the machine's path of the data, which
becomes the category's name. The compact copy is then evaluated on DATA's test split, and the metrics, beside
``checkpoint_checksum`` naming the copy they measured and the float32 original's metrics for comparison, go to
``hlgfa_lite/assets/checkpoints/NAME_metrics.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hlgfa_lite.tools.checkpoint import load, read_metadata, save
from hlgfa_lite.data import load_test_split
from hlgfa_lite.evaluation import evaluate_samples
from hlgfa_lite.tools.files import write_json

SHIPPED = Path(__file__).resolve().parents[1] / "hlgfa_lite" / "assets" / "checkpoints"
KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max")


def main(run_dir: Path, name: str, data: Path, preset_name: str | None = None) -> dict:
    fit_record = dict(read_metadata(run_dir).get("fit", {}))
    fit_record["data"] = f"{data.parent.name}/{data.name}"
    if preset_name and fit_record.setdefault("preset", preset_name) != preset_name:
        raise SystemExit(f"{run_dir} records preset {fit_record['preset']!r}, not {preset_name!r}")
    original = load(run_dir)
    target = save(original, SHIPPED / name, overwrite=True, extra={"fit": fit_record}, compact=True)
    samples = load_test_split(data)
    shipped = load(target)
    measured = evaluate_samples(shipped.score_batch, samples, shipped.cfg.eval_size, progress=False).metrics
    reference = evaluate_samples(original.score_batch, samples, original.cfg.eval_size, progress=False).metrics
    record = {**measured, "checkpoint_checksum": read_metadata(target)["checksum"],
              "float32_original": {k: reference[k] for k in KEYS}}
    write_json(SHIPPED / f"{name}_metrics.json", record)
    for key in KEYS:
        print(f"{key:<14} shipped {measured[key]:.4f}   float32 original {reference[key]:.4f}")
    print(f"shipped {target} ({sum(p.stat().st_size for p in target.iterdir()) / 2**20:.1f} MiB)")
    return record


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("name", help="the shipped checkpoint's name, e.g. tire_lite")
    parser.add_argument("data", type=Path, help="the MVTec-layout category it was fitted on (its test split is "
                                                "measured)")
    parser.add_argument("--preset", help="the preset it was fitted with, for a fit record that predates the field "
                                         "(tests/test_bundled.py checks the config against it)")
    arguments = parser.parse_args()
    main(arguments.run_dir, arguments.name, arguments.data, arguments.preset)
