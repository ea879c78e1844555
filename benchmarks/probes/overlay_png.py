"""How long `predict` spends writing an overlay, per zlib level of the PNG, and how many bytes each level writes.

    HF_HUB_OFFLINE=1 python -m benchmarks.probes.overlay_png ../shared/data/mvtec_bottle/bottle

Overlays of the shipped bottle checkpoint on the first test images (as `predict` draws them: the map over the image,
the calibrated mask outlined), each encoded at every level in turn, several rounds; the median per overlay.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

from PIL import Image

from hlgfa_lite.assets import bundled_checkpoint
from hlgfa_lite.data import MAX_SIDE, load_image
from hlgfa_lite.tools.checkpoint import load
from hlgfa_lite.tools.visualize import outline, overlay

LEVELS = (6, 3, 1)  # 6: zlib's and Pillow's default


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes.overlay_png", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="an MVTec-layout category folder")
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    model = load(bundled_checkpoint("bottle_lite"))
    cal = model.calibrated
    paths = sorted((Path(args.data) / "test").glob("*/*.png"))[:args.images]
    pictures = []
    for path in paths:
        image = load_image(path, MAX_SIDE)
        [(anomaly_map, _)] = model.predict([image])
        pictures.append(outline(overlay(image, anomaly_map, cal.map_vmin, cal.map_vmax), cal.mask(anomaly_map.numpy())))
    print(f"{len(pictures)} overlays of {pictures[0].shape[1]}x{pictures[0].shape[0]} px, {args.rounds} rounds")
    times = {level: [] for level in LEVELS}
    sizes = {}
    for _ in range(args.rounds):
        for level in LEVELS:  # levels in turn, so a drift of the machine's speed falls on each alike
            started = time.perf_counter()
            total = 0
            for picture in pictures:
                buffer = io.BytesIO()
                Image.fromarray(picture).save(buffer, format="PNG", compress_level=level)
                total += buffer.tell()
            times[level].append((time.perf_counter() - started) / len(pictures) * 1000)
            sizes[level] = total / len(pictures) / 2 ** 20
    print("| PNG compress_level | ms per overlay (median of rounds) | MiB per overlay |")
    print("|---|---:|---:|")
    for level in LEVELS:
        print(f"| {level} | {statistics.median(times[level]):.1f} | {sizes[level]:.2f} |")


if __name__ == "__main__":
    main()
