"""Rebuild a bundled sample (hlgfa_lite/assets/samples/<category>) from a full MVTec-layout category folder.

    python scripts/make_sample.py bottle ../shared/data/mvtec_bottle/bottle
    python scripts/make_sample.py tire ../shared/data/mvtec3d_tire/tire

Images are downsized to 512 x 512 px with the library's own resize (bilinear, antialiased): the model's high-res
view is 512 px, so a sample image gives the model exactly the view the full-size original gives (a model fitted on
the full data scores the sample as it scores the originals; another resampling filter, e.g. Lanczos, does not).
Non-square originals (tire is 600 x 800) are squeezed exactly as the model squeezes them.

The picks are fixed, evenly spaced indices chosen before any model scored them (never the hardest or easiest
images): a sample should err where the whole category errs.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hlgfa_lite.backbone import resize
from hlgfa_lite.data import load_image

SIZE = 512
PICKS = {
    "bottle": {
        "train_every": 10, "train_count": 20, "suffix": ".png", "save_as": ".png",
        "test": {"good": ["000", "005", "010", "015", "019"], "broken_large": ["000", "007", "014"],
                 "broken_small": ["001", "009", "017"], "contamination": ["002", "010", "018"]},
    },
    "tire": {  # MVTec 3D-AD tire, RGB only: every 3rd good test image, every 7th defective one of each type
        # JPEG (quality 95) as the originals are: a PNG of a photo re-encoded from JPEG is five times larger
        "train_every": 7, "train_count": 10, "suffix": ".jpg", "save_as": ".jpg",
        "test": {"good": [f"{i:03d}" for i in range(0, 25, 3)], "combined": ["000", "003"],
                 "contamination": ["000", "007", "014", "021"], "cut": ["000", "007", "014", "021"],
                 "hole": ["000", "007", "014", "021"]},
    },
}


def resized_image(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    pixels = (resize(load_image(src)[None], SIZE)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    options = {"quality": 95} if dst.suffix == ".jpg" else {"optimize": True}
    Image.fromarray(pixels).save(dst, **options)


def resized_mask(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.open(src).convert("L").resize((SIZE, SIZE), Image.NEAREST).save(dst, optimize=True)


def main(category: str, src: Path, dst: Path | None = None) -> None:
    picks = PICKS[category]
    dst = dst or Path(__file__).resolve().parents[1] / "hlgfa_lite" / "assets" / "samples" / category
    notice = (dst / "NOTICE.md").read_text() if (dst / "NOTICE.md").exists() else None
    if dst.exists():
        shutil.rmtree(dst)
    suffix, save_as = picks["suffix"], picks["save_as"]
    for path in sorted((src / "train/good").glob(f"*{suffix}"))[::picks["train_every"]][:picks["train_count"]]:
        resized_image(path, dst / "train/good" / f"{path.stem}{save_as}")
    for defect, ids in picks["test"].items():
        for i in ids:
            resized_image(src / "test" / defect / f"{i}{suffix}", dst / "test" / defect / f"{i}{save_as}")
            if defect != "good":
                resized_mask(src / "ground_truth" / defect / f"{i}_mask.png",
                             dst / "ground_truth" / defect / f"{i}_mask.png")
    for name in ("license.txt", "readme.txt"):
        shutil.copy(src / name, dst / name)
    if notice:
        (dst / "NOTICE.md").write_text(notice)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in PICKS:
        raise SystemExit(f"usage: python scripts/make_sample.py {{{','.join(PICKS)}}} PATH/TO/CATEGORY")
    main(sys.argv[1], Path(sys.argv[2]))
