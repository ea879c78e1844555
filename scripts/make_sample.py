"""Rebuild the bundled sample (hlgfa_lite/sample/bottle) from a full MVTec AD bottle folder.

    python scripts/make_sample.py ../shared/data/mvtec_bottle/bottle

Images are downsized to 512 px with the library's own resize (bilinear, antialiased): the model's high-res view
is 512 px, so a sample image gives the model exactly the view the full-size original gives (a model fitted on
the full data scores the sample as it scores the originals; another resampling filter, e.g. Lanczos, does not).
"""

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hlgfa_lite.backbone import resize
from hlgfa_lite.data import load_image

SIZE = 512
TEST_PICKS = {"good": ["000", "005", "010", "015", "019"], "broken_large": ["000", "007", "014"],
              "broken_small": ["001", "009", "017"], "contamination": ["002", "010", "018"]}


def resized_image(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    pixels = (resize(load_image(src)[None], SIZE)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(dst, optimize=True)


def resized_mask(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.open(src).convert("L").resize((SIZE, SIZE), Image.NEAREST).save(dst, optimize=True)


def main(src: Path, dst: Path = Path(__file__).resolve().parents[1] / "hlgfa_lite/sample/bottle") -> None:
    notice = (dst / "NOTICE.md").read_text() if (dst / "NOTICE.md").exists() else None
    if dst.exists():
        shutil.rmtree(dst)
    for path in sorted((src / "train/good").glob("*.png"))[::10][:20]:
        resized_image(path, dst / "train/good" / path.name)
    for defect, ids in TEST_PICKS.items():
        for i in ids:
            resized_image(src / "test" / defect / f"{i}.png", dst / "test" / defect / f"{i}.png")
            if defect != "good":
                resized_mask(src / "ground_truth" / defect / f"{i}_mask.png",
                             dst / "ground_truth" / defect / f"{i}_mask.png")
    for name in ("license.txt", "readme.txt"):
        shutil.copy(src / name, dst / name)
    if notice:
        (dst / "NOTICE.md").write_text(notice)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
