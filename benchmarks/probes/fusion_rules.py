"""Fusion rules scored on cached raw maps: the scale of each map, per-position centring, smoothing and part weight.

Reads the raw-maps cache that ``map_scale.py --maps`` writes (held-out good images and the whole test set of one
checkpoint) and scores every rule (``map_cache.SCALE_RULES``, described there) with this repository's metrics, nothing
refitted (training does not depend on how the maps are fused). A choice made here is made on test data: say so when
quoting it.

    python -m benchmarks.probes.fusion_rules /tmp/maps_bottle.pt /tmp/maps_tile.pt [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

from benchmarks.probes.map_cache import SCALE_RULES, evaluate, fuse, load_maps
from hlgfa_lite.tools.files import write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.fusion_rules",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("caches", nargs="+")
    parser.add_argument("--rules", nargs="+", default=list(SCALE_RULES), choices=SCALE_RULES)
    parser.add_argument("--weights", nargs="+", type=float, default=[0.5, 0.75])
    parser.add_argument("--sigmas", nargs="+", type=float, default=[4.0])
    parser.add_argument("--positional", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--pixel-size", type=int, default=256)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    data = {Path(path).stem: load_maps(path) for path in args.caches}
    names = list(data)
    lines = ["| rule | per-position centre | w | sigma | " + " | ".join(f"{n} image | {n} pixel" for n in names) + " |",
             "|---" * (4 + 2 * len(names)) + "|"]
    print(lines[0], flush=True)
    for rule, positional, weight, sigma in itertools.product(args.rules, args.positional, args.weights, args.sigmas):
        cells = []
        for name in names:
            image, pixel = evaluate(data[name], fuse(data[name], rule, bool(positional), weight, sigma), args.pixel_size)
            cells += [f"{image:.3f}", f"{pixel:.4f}"]
        lines.append(f"| {rule} | {bool(positional)} | {weight} | {sigma} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    if args.out:
        write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
