"""Train the heads that lessons 03 and 04 load (``hlgfa_lite.lessons.lesson_heads``) and store them in the package.

    OMP_NUM_THREADS=1 python scripts/train_lesson_heads.py            # all of them, one after the other
    OMP_NUM_THREADS=1 python scripts/train_lesson_heads.py 03_tire_no_gate # only the named ones

Run it again whenever the method or a recipe changes: a lesson notices a stale head (its stored config differs
from today's recipe) and trains live instead, which is slow on a CPU.
"""

from __future__ import annotations

import sys
import time

import torch

from hlgfa_lite.lessons.lesson_heads import RECIPES, lesson_head, ship


def main(argv: list[str]) -> int:
    names = argv or list(RECIPES)
    torch.set_num_threads(1)
    for name in names:
        started = time.perf_counter()
        head = lesson_head(name, live=True, progress=False)
        run_dir = ship(head, name)
        print(f"{name}: final loss {head.losses[-1]:.4f}, {time.perf_counter() - started:.0f} s -> {run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
