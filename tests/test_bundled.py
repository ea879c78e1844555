"""What ships inside the package: the two samples and the checkpoints fitted on their categories.

A shipped checkpoint must be what its name says: fitted with a named preset whose *current* defaults it matches (a
preset that moves on leaves a stale checkpoint behind, and this test says which field moved), and its metrics file
must be the evaluation of that very checkpoint.
"""

import json

import pytest

from hlgfa_lite.lessons import lesson_heads
from hlgfa_lite.tools.checkpoint import read_metadata
from hlgfa_lite.config import HLGFAConfig, preset
from hlgfa_lite.data import load_test_split, train_image_paths
from hlgfa_lite.assets import CHECKPOINTS, SAMPLES, bundled_checkpoint, sample_dir

RESOLVED_BY_THE_FIT = {"map_scale": {"auto": ("std", "max")}}  # a preset's "auto" is saved as what the fit chose


def differences_from_preset(config: dict, preset_name: str) -> list[str]:
    """Fields of a saved config that differ from the preset's current defaults (the seed aside)."""
    wanted = preset(preset_name, seed=config["seed"]).to_dict()
    saved = HLGFAConfig.from_dict(config).to_dict()
    moved = []
    for field, value in wanted.items():
        allowed = RESOLVED_BY_THE_FIT.get(field, {}).get(value, (value,))
        if saved[field] not in allowed:
            moved.append(f"{field}: saved {saved[field]!r}, preset {preset_name!r} now {value!r}")
    return moved


def test_differences_from_preset_names_the_field_that_moved():
    lite = preset("lite").to_dict()
    assert differences_from_preset({**lite, "map_scale": "max"}, "lite") == []
    assert differences_from_preset({**lite, "map_scale": "std", "smooth_sigma": 2.0}, "lite") == [
        "smooth_sigma: saved 2.0, preset 'lite' now 4.0"]
    assert differences_from_preset(preset("lite_paper").to_dict(), "lite")  # no normality term: not lite


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_each_bundled_checkpoint_records_its_preset_and_matches_its_current_defaults(name):
    meta = read_metadata(bundled_checkpoint(name))
    fitted_with = meta.get("fit", {}).get("preset")
    assert fitted_with, f"{name}: no preset recorded in its fit record; refit it with hlgfa-lite fit --preset"
    assert not differences_from_preset(meta["config"], fitted_with), (
        f"{name} is stale against the {fitted_with!r} preset: {differences_from_preset(meta['config'], fitted_with)}; "
        "refit it (hlgfa_lite/assets/checkpoints/README.md has the commands)")


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_each_bundled_checkpoint_has_the_metrics_of_that_checkpoint_beside_it(name):
    folder = bundled_checkpoint(name)
    metrics = json.loads((folder.parent / f"{name}_metrics.json").read_text())
    assert {"image_auroc", "pixel_auroc", "pixel_aupro"} <= set(metrics)
    assert metrics.get("checkpoint_checksum") == read_metadata(folder)["checksum"], (
        f"{name}_metrics.json was not made from this checkpoint: re-run the command in the README beside it")


@pytest.mark.parametrize("name", sorted(lesson_heads.RECIPES))
def test_each_lesson_head_matches_its_recipe_today(name):
    assert lesson_heads.why_not_shipped(name) is None


@pytest.mark.parametrize("category", SAMPLES)
def test_each_sample_is_a_small_licensed_mvtec_folder_with_paired_masks(category):
    folder = sample_dir(category)
    for notice in ("NOTICE.md", "license.txt", "readme.txt"):
        assert (folder / notice).is_file(), f"{category}: {notice} must travel with the images"
    assert "CC BY-NC-SA 4.0" in (folder / "NOTICE.md").read_text()
    assert len(train_image_paths(folder)) >= 10
    samples = load_test_split(folder)
    defective = [s for s in samples if s.label]
    assert defective and all(s.mask_path is not None and s.mask_path.is_file() for s in defective)
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 10 * 2**20


def test_compact_storage_keeps_each_precision_matrix_to_half_precision():
    import torch

    from hlgfa_lite.tools.checkpoint import PACKED, compact_state, expand_state

    torch.manual_seed(0)
    a = torch.randn(5, 7, 7)
    precision = a @ a.transpose(1, 2) + torch.eye(7)  # symmetric positive definite, like a fit's
    tensors = {"normality.levels.0.precision": precision, "head.w": torch.randn(3, 4), "steps": torch.tensor([3])}
    compact = compact_state(tensors)
    assert set(compact) == {"normality.levels.0" + PACKED, "head.w", "steps"}
    assert compact["normality.levels.0" + PACKED].shape == (5, 28) and compact["head.w"].dtype == torch.float16
    back = expand_state(compact)
    assert torch.equal(back["normality.levels.0.precision"], precision.half().float())  # both triangles restored
    assert torch.equal(back["steps"], tensors["steps"])


def test_a_packed_matrix_that_is_not_a_triangle_is_refused():
    import torch

    from hlgfa_lite.tools.checkpoint import PACKED, expand_state
    from hlgfa_lite.errors import HLGFAError

    with pytest.raises(HLGFAError, match="upper triangle"):
        expand_state({"normality.levels.0" + PACKED: torch.zeros(2, 27)})
