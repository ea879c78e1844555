"""What the page offers visitors to start from: the bundled sample's images, cut from one listing of its files
(Inspect's thumbnails, Draw's good bottles, Fit's training set), and the link to the code."""

from __future__ import annotations

import filecmp
from functools import lru_cache
from pathlib import Path

from ..assets import sample_dir


@lru_cache(maxsize=1)
def sample_files() -> tuple[Path, ...]:
    """Every file of the bundled sample, sorted: the one listing every list below comes from."""
    return tuple(sorted(p for p in sample_dir().rglob("*") if p.is_file()))


def _pngs(*folders: str) -> list[Path]:
    """The sample's PNGs directly inside ``sample_dir()/folders...``."""
    where = sample_dir().joinpath(*folders)
    return [p for p in sample_files() if p.parent == where and p.suffix == ".png"]


def _test_images_by_type() -> dict[str, list[Path]]:
    """Test images per defect type, "good" first, then the defect types alphabetically."""
    test = sample_dir() / "test"
    types = sorted({p.parent.name for p in sample_files() if p.parent.parent == test}, key=lambda t: (t != "good", t))
    return {kind: images for kind in types if (images := _pngs("test", kind))}


def example_images() -> list[tuple[str, str]]:
    """(label, path): one good test image, then the first image of each defect type."""
    return [(kind.replace("_", " "), str(images[0])) for kind, images in _test_images_by_type().items()]


def bundled_test_images() -> list[tuple[str, str]]:
    """(caption, path) of every bundled test image: one good image, then the first of each defect type, then the
    rest ("good 000", "broken large 000", ...), so a phone's first screen of thumbnails shows good and defective
    bottles side by side."""
    by_type = _test_images_by_type()
    firsts = [(kind, images[0]) for kind, images in by_type.items()]
    rest = [(kind, image) for kind, images in by_type.items() for image in images[1:]]
    return [(f"{kind.replace('_', ' ')} {image.stem}", str(image)) for kind, image in firsts + rest]


def good_images() -> list[str]:
    """The good test images (the Draw tab paints on them)."""
    return [str(p) for p in _pngs("test", "good")]


def training_images() -> list[str]:
    """The sample's good training images (the Fit tab's "use the bundled images")."""
    return [str(p) for p in _pngs("train", "good")]


def is_copy_of_sample(path: str | Path) -> bool:
    """Whether a file holds one of the bundled sample's files, name and bytes (Gradio's cached copy of an example
    that every page shows: not any one visitor's)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        return any(image.name == path.name and size == image.stat().st_size
                   and filecmp.cmp(path, image, shallow=False) for image in sample_files())
    except OSError:
        return False


def code_url() -> str | None:
    """The repository's address, from the one place that holds it: the package's ``Repository`` project URL
    (``[project.urls]`` in pyproject.toml, set by scripts/set_repository.py). None if the install lacks it."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("hlgfa-lite").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    return dict(u.split(", ", 1) for u in urls if ", " in u).get("Repository")
