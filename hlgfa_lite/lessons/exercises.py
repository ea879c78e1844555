"""The lessons' "write this" exercises: a reference solution for each and the check that grades a reader's version.

A lesson cell holds a stub for the reader to fill in, then calls ``check(name, their_function)``. The check runs
the function on several fresh inputs and compares it with the library's own computation (not with the reference
solution alone, so a reference that drifted from the library would fail its own check in the tests).

A stub that still raises ``NotImplementedError`` is not an error: ``check`` says so and grades the reference
solution instead. That is the solutions path: "Run all", CI and the committed outputs go through every lesson top
to bottom, and ``solution(name)`` prints the reference for a reader who is stuck.

    image_score     00  score = mean of the top k values of the map
    misalignment    01  e = 1 - cos(F_L, avgpool_2(F_H)) per location
    copy_the_target 02  the cheat: T rebuilt from the priors alone, T = S_down + mean_k D_down^(k)
    film            03  M from F_L and the structure prior, through a real AlignmentLevel's own layers
    brightness      04  training's brightness factor, on an image already normalised for the backbone
    pro_at          05  PRO(t) = (1/R) sum_r |{u in r : A(u) > t}| / |r|, regions 8-connected

The cases are built so that the common wrong answers fail (tests/test_exercises.py lists them): k rounded, not
floored; ties at the threshold; regions that touch only at a corner; FiLM layers with non-zero weights.

``reveal(evidence)`` is the other half of predict-then-reveal: the evidence cell under a lesson's questions runs
and prints only when the reader presses its button, so the committed notebook does not show the answers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..alignment import AlignmentLevel, misalignment as library_misalignment
from ..config import preset
from ..metrics import EIGHT_CONNECTED
from ..priors import Priors, priors_on_low_grid
from ..scoring import image_scores


# ---- reference solutions (what `solution(name)` prints) ----

def image_score(anomaly_map: torch.Tensor, topk: float) -> float:
    values = anomaly_map.flatten()
    k = max(1, round(topk * values.numel()))
    return values.topk(k).values.mean().item()


def misalignment(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    target = F.avg_pool2d(high[None], 2)[0]  # (C, h, w): the high-res features on the low-res grid
    return 1 - F.cosine_similarity(low, target, dim=0, eps=1e-6)


def copy_the_target(structure: torch.Tensor, detail: torch.Tensor, ratio: int) -> torch.Tensor:
    channels, h, w = structure.shape
    sub_positions = detail.view(channels, ratio * ratio, h, w)  # pixel_unshuffle stacked r*r values per channel
    return structure + sub_positions.mean(1)


def film(low: torch.Tensor, structure: torch.Tensor, level: AlignmentLevel) -> torch.Tensor:
    # one image, no batch dimension: the channels are dim 0, so gamma and beta are its two halves
    gamma, beta = level.film(level.structure_proj(structure)).chunk(2, dim=0)
    return (1 + gamma) * low + beta


def brightness(normalised: torch.Tensor, factor: float, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    image = normalised * std + mean  # back to the light the camera recorded, in [0, 1]
    return ((image * factor).clamp(0, 1) - mean) / std


def pro_at(maps: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    overlaps = []
    for anomaly_map, mask in zip(maps, masks):
        regions, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
        for r in range(1, count + 1):
            region = regions == r
            overlaps.append((anomaly_map[region] > threshold).mean())
    return float(np.mean(overlaps))


# ---- what the checks compare with: the library's own computation, on fresh inputs ----

def _cases_image_score(rng: torch.Generator):
    # k = 1.7 and 2.3 on 100 values: rounding gives 2 and 2, floor 1 and 2, ceil 2 and 3; k = 0.01 needs the max(1, .)
    for shape, topk in (((32, 32), 0.01), ((10, 10), 0.017), ((10, 10), 0.023), ((10, 10), 0.0001), ((50, 50), 0.2)):
        anomaly_map = torch.randn(shape, generator=rng)
        yield (anomaly_map, topk), image_scores(anomaly_map[None], topk)[0].item()


def _cases_misalignment(rng: torch.Generator):
    for channels, size in ((4, 8), (16, 5), (40, 16)):
        low, high = torch.randn(channels, size, size, generator=rng), torch.randn(channels, 2 * size, 2 * size, generator=rng)
        target = priors_on_low_grid(high[None], 1.0, 2).target
        yield (low, high), library_misalignment(low[None], target)[0]


def _cases_copy_the_target(rng: torch.Generator):
    for channels, size, ratio in ((4, 8, 2), (24, 6, 2), (8, 4, 3)):
        priors = priors_on_low_grid(torch.randn(1, channels, ratio * size, ratio * size, generator=rng), 2.0, ratio)
        yield (priors.structure[0], priors.detail[0], ratio), priors.target[0]


def _cases_film(rng: torch.Generator):
    torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=rng)))
    for channels, prior_width, size in ((8, 1.0, 6), (12, 0.5, 9), (6, 1.0, 5)):
        level = AlignmentLevel(channels, 2, preset("lite").replace(prior_width=prior_width)).eval()
        for layer in (level.structure_proj, *level.film):
            if isinstance(layer, torch.nn.Conv2d):  # FiLM's last layer starts at zero (M = F_L): give it weights
                torch.nn.init.normal_(layer.weight, std=0.3)
                torch.nn.init.normal_(layer.bias, std=0.3)
        low = torch.randn(1, channels, size, size, generator=rng)
        priors = Priors(structure=torch.randn(1, channels, size, size, generator=rng),
                        detail=torch.randn(1, 4 * channels, size, size, generator=rng),
                        target=torch.zeros(1, channels, size, size))
        with torch.no_grad():
            expected = level(low, priors).modulated
        yield (low[0], priors.structure[0], level), expected[0]


# ImageNet's per-channel statistics (most backbones'): different per channel, so a scalar shortcut fails
_IMAGENET_MEAN, _IMAGENET_STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


def _cases_brightness(rng: torch.Generator):
    import torchvision.transforms.v2.functional as TF  # what NoiseAugment draws during training

    mean, std = _IMAGENET_MEAN.view(3, 1, 1), _IMAGENET_STD.view(3, 1, 1)
    for factor in (0.75, 1.0, 1.25, 1.6):  # above 1, the brighter pixels saturate at white
        image = torch.rand(3, 12, 10, generator=rng)
        image[:, 0, :3] = 0.0  # black stays black under a factor, not under a shift
        yield ((image - mean) / std, factor, mean.clone(), std.clone()), (TF.adjust_brightness(image, factor) - mean) / std


def _cases_pro_at(rng: torch.Generator):
    generator = np.random.default_rng(int(torch.randint(1 << 30, (1,), generator=rng)))
    masks = np.stack([_random_regions(generator, 30) for _ in range(3)])
    masks[1, 27:29, 27:29] = True  # one region more than image 0: a mean of per-image means differs
    masks[2] = False  # a good image: no region, and no term of its own in the mean over regions
    # map values on a grid of sixteenths (exact in binary), so some pixels sit exactly on a threshold: > is not >=
    maps = generator.integers(0, 13, masks.shape) / 16
    maps[masks] += 4 / 16
    for threshold in (4 / 16, 0.55, 10 / 16, 12 / 16):
        yield (maps.copy(), masks.copy(), threshold), _pro_from_curve(maps, masks, threshold)


def _random_regions(generator: np.random.Generator, side: int) -> np.ndarray:
    """A mask with a rectangle of random size, a diagonal staircase and two squares that touch only at a corner:
    with 8-connectivity the staircase and the pair are one region each; with 4-connectivity they fall apart."""
    mask = np.zeros((side, side), dtype=bool)
    height, width = generator.integers(3, 9, 2)
    mask[1:1 + height, 1:1 + width] = True
    row, col = generator.integers(12, side - 8, 2)
    for step in range(int(generator.integers(3, 7))):
        mask[row + step, col - 10 + step] = True
    mask[row:row + 2, col:col + 2] = mask[row + 2:row + 5, col + 2:col + 5] = True
    return mask


def _pro_from_curve(maps: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    """PRO at ``threshold`` read off ``metrics.pro_curve`` (its points are at every distinct map value)."""
    from ..metrics import pro_curve

    _, pro = pro_curve(maps, masks)  # pro[j]: the j highest distinct map values counted as "above"
    return float(pro[len(np.unique(maps[maps > threshold]))])


@dataclass(frozen=True)
class Exercise:
    reference: Callable
    cases: Callable[[torch.Generator], object]
    what: str


EXERCISES: dict[str, Exercise] = {
    "image_score": Exercise(image_score, _cases_image_score, "the mean of the top k values of a map"),
    "misalignment": Exercise(misalignment, _cases_misalignment, "1 - cos(F_L, avgpool_2(F_H)) per location"),
    "copy_the_target": Exercise(copy_the_target, _cases_copy_the_target, "the target rebuilt from the priors alone"),
    "film": Exercise(film, _cases_film, "the modulation M of a real AlignmentLevel"),
    "brightness": Exercise(brightness, _cases_brightness,
                           "training's brightness change (torchvision's), renormalised for the backbone"),
    "pro_at": Exercise(pro_at, _cases_pro_at, "PRO at one threshold (metrics.pro_curve's value)"),
}


def _close(got, expected) -> bool:
    got, expected = torch.as_tensor(np.asarray(got, dtype=np.float64)), torch.as_tensor(np.asarray(expected, dtype=np.float64))
    return got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-4, atol=1e-5)


def check(name: str, function: Callable, seed: int = 0) -> bool:
    """Grade ``function`` for exercise ``name``: True when it matches on every case; raises AssertionError when
    it does not. A stub that raises NotImplementedError grades the reference solution instead and returns False."""
    exercise = EXERCISES[name]
    try:
        _run(name, function, next(iter(exercise.cases(torch.Generator().manual_seed(seed))))[0])
        graded, yours = function, True
    except NotImplementedError:
        graded, yours = exercise.reference, False
    n = 0
    for n, (arguments, expected) in enumerate(exercise.cases(torch.Generator().manual_seed(seed)), start=1):
        got = _run(name, graded, arguments)
        if not _close(got, expected):
            shape = tuple(np.shape(np.asarray(got, dtype=object if got is None else None)))
            raise AssertionError(f"{name}: case {n} differs from {exercise.what} "
                                 f"(your result's shape {shape}, expected {tuple(np.shape(np.asarray(expected)))}). "
                                 f"Look again, or print the reference: solution({name!r})")
    if yours:
        print(f"✓ {name}: your function matches {exercise.what} on all {n} cases")
    else:
        print(f"○ {name}: not written yet (the cell still raises NotImplementedError). The reference solution passes "
              f"the same {n} cases; write yours and run the cell again, or print it: solution({name!r})")
    return yours


def _run(name: str, function: Callable, arguments) -> object:
    """``function(*arguments)`` without autograd; an error in it is a wrong answer, reported like one."""
    try:
        with torch.no_grad():
            return function(*arguments)
    except NotImplementedError:
        raise
    except Exception as error:
        raise AssertionError(f"{name}: your function raised {type(error).__name__}: {error}. Look again, or print "
                             f"the reference: solution({name!r})") from error


def solution(name: str) -> None:
    """Print the reference solution of exercise ``name``."""
    print(inspect.getsource(EXERCISES[name].reference))


def reveal(evidence: Callable[[], object], run_now: bool = False):
    """A "Show the evidence" button over an empty output box: ``evidence`` runs, and prints into the box, only when
    the reader presses it, so a saved notebook does not show the answers under its questions. Where widgets are not
    drawn, the reader calls ``evidence()`` instead. ``run_now=True`` (the lessons pass ``FAST``, CI's mode) runs it
    at once, outside any widget, so an error in the evidence fails the run instead of hiding in a callback."""
    if run_now:
        evidence()
        return None
    try:
        import ipywidgets as widgets
    except ModuleNotFoundError:
        print("ipywidgets is not installed: call evidence() to print the evidence.")
        return None
    button = widgets.Button(description="Show the evidence", icon="eye",
                            tooltip="runs the cell's evidence() and prints what it finds")
    output = widgets.Output()

    def show(_button) -> None:
        button.disabled = True
        with output:
            evidence()

    button.on_click(show)
    return widgets.VBox([button, output])
