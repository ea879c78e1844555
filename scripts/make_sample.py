"""Rebuild the bundled sample (hlgfa_lite/sample/bottle) from a full MVTec AD bottle folder.

    python scripts/make_sample.py ../shared/data/mvtec_bottle/bottle
"""

import shutil
import sys
from pathlib import Path

from PIL import Image

SIZE = 320
TEST_PICKS = {"good": ["000", "005", "010", "015", "019"], "broken_large": ["000", "007", "014"],
              "broken_small": ["001", "009", "017"], "contamination": ["002", "010", "018"]}


def resized(src: Path, dst: Path, mode: str, resample) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.open(src).convert(mode).resize((SIZE, SIZE), resample).save(dst, optimize=True)


def main(src: Path, dst: Path = Path(__file__).resolve().parents[1] / "hlgfa_lite/sample/bottle") -> None:
    notice = (dst / "NOTICE.md").read_text() if (dst / "NOTICE.md").exists() else None
    if dst.exists():
        shutil.rmtree(dst)
    for path in sorted((src / "train/good").glob("*.png"))[::10][:20]:
        resized(path, dst / "train/good" / path.name, "RGB", Image.LANCZOS)
    for defect, ids in TEST_PICKS.items():
        for i in ids:
            resized(src / "test" / defect / f"{i}.png", dst / "test" / defect / f"{i}.png", "RGB", Image.LANCZOS)
            if defect != "good":
                resized(src / "ground_truth" / defect / f"{i}_mask.png",
                        dst / "ground_truth" / defect / f"{i}_mask.png", "L", Image.NEAREST)
    for name in ("license.txt", "readme.txt"):
        shutil.copy(src / name, dst / name)
    if notice:
        (dst / "NOTICE.md").write_text(notice)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
