"""A head step with the training features held channels-first or channels-last, and the residual's first convolution
and the gate run as two convolutions or as one (``alignment.both_convolutions``): milliseconds per step of each
combination, alternately in one process, and how far each head lands from the first one's.

The features of the first ``--images`` training images of DATA are held in memory once (as ``fit`` holds them, now
channels-last); a channels-first copy stands for the layout before. The head is trained ``--steps`` steps from the
same start for each combination, alternately, ``--rounds`` times (the library's ``train_head``, bfloat16 autocast,
2 torch threads). Run it alone on the machine:

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.head_step_layout ../shared/data/mvtec3d_tire/tire
"""

from __future__ import annotations

import statistics
import time

import torch

from hlgfa_lite import alignment
from hlgfa_lite.alignment import LevelOutput
from hlgfa_lite.tools import cache
from hlgfa_lite.training import train_head

from .head_step import held_for_steps


def two_convolutions(self, low, priors):
    """``AlignmentLevel.forward`` as it was: the residual and the gate each convolve their input."""
    gamma, beta = self.film(self.structure_proj(priors.structure)).chunk(2, dim=1)
    modulated = (1 + gamma) * low + beta
    residual_input = torch.cat([modulated, self.detail_proj(priors.detail)], dim=1)
    correction = self.residual(residual_input)
    gate = torch.sigmoid(self.gate(residual_input))
    return LevelOutput(refined=modulated + gate * correction, modulated=modulated, gate=gate)


def channels_first(held: cache.FeatureCache) -> cache.FeatureCache:
    return cache.FeatureCache([p.apply(lambda t: t.contiguous()) for p in held.priors],
                              [t.contiguous() for t in held.low])


def main(argv: list[str] | None = None) -> None:
    args, model, last, start = held_for_steps("python -m benchmarks.probes.head_step_layout",
                                              __doc__.splitlines()[0], argv)
    first = channels_first(last)
    fused = alignment.AlignmentLevel.forward
    combinations = {"channels-first, two convolutions (before)": (first, two_convolutions),
                     "channels-last, two convolutions": (last, two_convolutions),
                     "channels-first, one convolution": (first, fused),
                     "channels-last, one convolution (fit)": (last, fused)}
    milliseconds: dict[str, list[float]] = {name: [] for name in combinations}
    heads = {}
    for _ in range(args.rounds + 1):  # the first round warms up and is not counted
        for name, (held, forward) in combinations.items():
            alignment.AlignmentLevel.forward = forward
            model.head.load_state_dict(start)
            began = time.perf_counter()
            train_head(model, held, args.steps, progress=False)
            milliseconds[name].append((time.perf_counter() - began) * 1000 / args.steps)
            heads[name] = {k: v.clone() for k, v in model.head.state_dict().items()}
    alignment.AlignmentLevel.forward = fused
    reference = heads[next(iter(heads))]
    print(f"{args.data}: {args.images} images held, {args.steps} steps of {model.cfg.batch_size} per round, "
          f"{args.threads} threads, bfloat16 autocast, medians of {args.rounds} rounds")
    for name, values in milliseconds.items():
        head = heads[name]
        distance = max(((head[k] - reference[k]).norm() / reference[k].norm().clamp_min(1e-12)).item()
                       for k in reference)
        same = all(torch.equal(head[k], reference[k]) for k in reference)
        print(f"  {name}: {statistics.median(values[1:]):.1f} ms / step ({', '.join(f'{v:.0f}' for v in values[1:])}); "
              f"head against the first: {'the same bit for bit' if same else f'largest relative distance {distance:.1e}'}")


if __name__ == "__main__":
    main()
