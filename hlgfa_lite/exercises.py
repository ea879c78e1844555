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
    film            03  M = (1 + gamma) * F_L + beta, checked against a real AlignmentLevel
    brightness      04  training's brightness: a factor, clipped to [0, 1]
    pro_at          05  PRO(t) = (1/R) sum_r |{u in r : A(u) > t}| / |r|
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .alignment import AlignmentLevel, misalignment as library_misalignment
from .config import preset
from .metrics import EIGHT_CONNECTED
from .priors import Priors, priors_on_low_grid
from .scoring import image_scores


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


def film(low: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return (1 + gamma) * low + beta


def brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    return (image * factor).clamp(0, 1)


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
    for shape, topk in (((32, 32), 0.01), ((64, 48), 0.05), ((10, 10), 0.0001), ((50, 50), 0.2)):
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
    level = AlignmentLevel(8, 2, preset("lite"))
    for module in level.film:  # the last layer starts at zero (identity): give it weights, or M = F_L always
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.2)
    for size in (6, 9):
        low = torch.randn(1, 8, size, size, generator=rng)
        priors = Priors(structure=torch.randn(1, 8, size, size, generator=rng),
                        detail=torch.randn(1, 32, size, size, generator=rng), target=torch.zeros(1, 8, size, size))
        with torch.no_grad():
            gamma, beta = level.film(level.structure_proj(priors.structure)).chunk(2, dim=1)
            expected = level(low, priors).modulated
        yield (low[0], gamma[0], beta[0]), expected[0]


def _cases_brightness(rng: torch.Generator):
    import torchvision.transforms.v2.functional as TF  # what NoiseAugment draws during training

    for factor in (0.75, 1.0, 1.25, 1.6):
        image = torch.rand(3, 12, 10, generator=rng)
        yield (image, factor), TF.adjust_brightness(image, factor)


def _cases_pro_at(rng: torch.Generator):
    generator = np.random.default_rng(int(torch.randint(1 << 30, (1,), generator=rng)))
    maps = generator.uniform(0, 1, (3, 30, 30))
    masks = np.zeros((3, 30, 30), dtype=bool)
    masks[0, 2:12, 3:15], masks[0, 20:22, 20:23], masks[1, 5:25, 5:8], masks[2, 14:16, 14:16] = True, True, True, True
    maps[masks] += 0.3
    for threshold in (0.2, 0.6, 0.9, 1.2):
        yield (maps, masks, threshold), _pro_from_curve(maps, masks, threshold)


def _pro_from_curve(maps: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    """PRO at ``threshold`` read off ``metrics.pro_curve`` (its points are at every distinct map value)."""
    from .metrics import pro_curve

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
    "brightness": Exercise(brightness, _cases_brightness, "training's brightness change (torchvision's)"),
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
        function(*next(iter(exercise.cases(torch.Generator().manual_seed(seed))))[0])
        graded, yours = function, True
    except NotImplementedError:
        graded, yours = exercise.reference, False
    n = 0
    for n, (arguments, expected) in enumerate(exercise.cases(torch.Generator().manual_seed(seed)), start=1):
        got = graded(*arguments)
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


def solution(name: str) -> None:
    """Print the reference solution of exercise ``name``."""
    print(inspect.getsource(EXERCISES[name].reference))
