"""Reading images, masks and MVTec-layout folders, with one clear error per mistake.

Layout (as MVTec AD)::

    CATEGORY/train/good/*.png                      defect-free training images
    CATEGORY/test/good/*.png                       defect-free test images (no masks)
    CATEGORY/test/<defect type>/<name>.png         defective test images
    CATEGORY/ground_truth/<defect type>/<name>_mask.png

A plain folder of good images also works for ``fit``. Masks are paired with images **by name**, never by sort
order (sort order pairs ``x-10`` with ``x-2``'s mask), and every pair is checked.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import HLGFAError, named

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}  # a GIF's first frame
# the one pixel limit for every way an image enters (library, CLI, demo): refused before decoding, since a
# decompression bomb or a panorama would otherwise take gigabytes; downscale it first
MAX_PIXELS = 100_000_000
MAX_SIDE = 4096  # the CLI's longest side: bigger images are downscaled while decoding, so memory stays bounded
# the shortest side a training image may have: 32 px, one cell of the backbone's coarsest stride, would already be
# enlarged 16 times to 512 px; a smaller "good" image (a thumbnail, a 1x1 export) is a mistake, not a part
MIN_TRAINING_SIDE = 32


GRAY_SPREAD = 2 / 255  # channels this close on average are one gray value (a JPEG's chroma rounding stays under it)


def is_grayscale(image: torch.Tensor) -> bool:
    """(3, H, W) image, float in [0, 1] or uint8: its colour channels are (nearly) equal, as a grayscale camera's
    are once expanded to RGB. Read on every 4th pixel of each axis, which is plenty for an average."""
    sampled = image[:, ::4, ::4].float() / (255 if image.dtype == torch.uint8 else 1)
    return bool((sampled.amax(0) - sampled.amin(0)).mean() <= GRAY_SPREAD)


class TooManyPixels(HLGFAError):
    """An image over ``MAX_PIXELS`` (``width`` x ``height``; None when PIL's own bomb limit refused it first)."""

    def __init__(self, message: str, width: int | None = None, height: int | None = None):
        super().__init__(message)
        self.width, self.height = width, height


def as_path(value, what: str) -> Path:
    """``value`` as a Path if it is one, or a str; else HLGFAError (``None``, a number, bytes)."""
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        return Path(value)
    raise HLGFAError(f"{what} path must be a str or pathlib.Path, got {type(value).__name__}.")


class UnreadableImage(HLGFAError):
    """A file that does not decode: not an image at all (``unidentified``) or damaged (``cause``, the error's class)."""

    def __init__(self, message: str, cause: str, unidentified: bool):
        super().__init__(message)
        self.cause, self.unidentified = cause, unidentified


@dataclass
class Decoded:
    image: Image.Image  # EXIF rotation applied; longer side <= the max_side asked for
    size: tuple[int, int]  # (width, height) as stored in the file, before rotation or downscaling
    mode: str  # PIL mode as stored: "RGB", "L", "I;16", "CMYK", ...
    multi_frame: bool  # only the first frame was decoded
    exif_ignored: bool  # the EXIF orientation could not be read, so none was applied


def natural_key(path: Path) -> list:
    """Sort ``x-2`` before ``x-10``, as a person would."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def is_hidden(path: Path, folder: Path | None = None) -> bool:
    """Hidden itself or below ``folder``: a name starting with "." is a system's, not a part's (macOS's "._000.png"
    beside a copied "000.png", ".ipynb_checkpoints/", ".DS_Store")."""
    names = path.relative_to(folder).parts if folder is not None else (path.name,)
    return any(n.startswith(".") for n in names)


def has_image_extension(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_image_file(path: Path, folder: Path | None = None) -> bool:
    """An image a folder offers: a file with an image extension, not hidden (``is_hidden``)."""
    return has_image_extension(path) and not is_hidden(path, folder) and path.is_file()


def files_below(folder: Path) -> list[Path]:
    """Every file below ``folder``, hidden ones aside (``is_hidden``), sorted. A linked folder is followed, as a
    person who linked a data set in expects, and each real folder is read once, so a link to a folder above cannot
    loop."""
    found, seen = [], set()
    for parent, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(parent)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [Path(parent) / name for name in names if not name.startswith(".")]
    return sorted(p for p in found if p.is_file())


def list_images(folder: Path) -> list[Path]:
    return sorted((p for p in Path(folder).iterdir() if is_image_file(p)), key=natural_key)


def check_pixels(width: int, height: int, what: str = "the image") -> None:
    """The pixel-count rule (``MAX_PIXELS``), for files and for pixels that arrive decoded (the demo's editor)."""
    if width * height > MAX_PIXELS:
        raise TooManyPixels(f"{what} is {width} x {height} pixels, over the limit of {MAX_PIXELS // 1_000_000} "
                            "million; downscale it first.", width, height)


def fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the longer side is <= ``max_side``, keeping the aspect ratio (and at least 1 px a side)."""
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    if image.mode in {"1", "P", "PA"}:  # palette indices cannot be interpolated
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    return image.resize((max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))),
                        Image.BILINEAR, reducing_gap=2.0)


def decode(path: str | Path, max_side: int | None = None) -> Decoded:
    """The one image decoder (library, CLI and demo). The header is read first (``Image.open`` is lazy), so an
    image over ``MAX_PIXELS`` is refused before a byte of it is decoded; with ``max_side`` a JPEG much larger than
    that is decoded at 1/2, 1/4 or 1/8 scale and every image is downscaled to it. Fails with ``TooManyPixels`` or
    ``UnreadableImage``, one line each."""
    path = as_path(path, "an image")
    if path.is_dir() or not path.exists():  # PIL would call either "damaged"
        what = "is a folder; give an image file in it" if path.is_dir() else "does not exist; check the path"
        raise UnreadableImage(f"image {path} {what}.", "FileNotFoundError", False)
    image = None
    try:
        try:
            with warnings.catch_warnings():
                # MAX_PIXELS replaces PIL's decompression-bomb warning; its error (> 2x its limit) is caught below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path)
                width, height = image.size
                check_pixels(width, height, f"image {path}")
                mode, multi_frame = image.mode, getattr(image, "n_frames", 1) > 1
                if max_side and image.format == "JPEG" and max(width, height) > 2 * max_side:
                    image.draft("RGB", (max_side, max_side))
                image.load()
                if multi_frame:  # Pillow keeps a multi-page file open for its other pages: keep the first, close it
                    first, image = image, image.copy()
                    first.close()
        except BaseException:
            if image is not None:  # a refused or broken file is closed now, not whenever the collector runs
                image.close()
            raise
    except HLGFAError:
        raise
    except Image.DecompressionBombError:
        raise TooManyPixels(f"image {path} has more pixels than allowed ({MAX_PIXELS // 1_000_000} million); "
                            "downscale it first.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        unidentified = isinstance(exc, UnidentifiedImageError)
        what = "not an image file" if unidentified else "damaged or truncated"
        raise UnreadableImage(f"cannot read image {path} ({what}); replace or remove the file.",
                              exc.__class__.__name__, unidentified) from None
    exif_ignored = False
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost the image
        exif_ignored = True
    if max_side:
        image = fit_within(image, max_side)
    return Decoded(image, (width, height), mode, multi_frame, exif_ignored)


def _open(path: Path, max_side: int | None = None) -> Image.Image:
    decoded = decode(path, max_side)
    if decoded.exif_ignored:
        warnings.warn(f"the EXIF orientation of {path} could not be read and was ignored", stacklevel=3)
    return decoded.image


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """Any PIL image (RGB, L, RGBA, P, CMYK, 16-bit, float) -> (3, H, W) float32 in [0, 1]."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        values = np.asarray(image, dtype=np.float32)
        if image.mode.startswith("I;16"):
            top = 65535.0
        elif image.mode == "I":  # 32-bit integers, whatever the camera's depth: the smallest of 8, 16, 31 bits that fits
            top = 255.0 if values.max() <= 255 else 65535.0 if values.max() <= 65535 else 2.0 ** 31 - 1
        else:  # "F": floats, in [0, 1] or scaled to their largest value
            top = max(float(values.max()), 1.0)
        gray = np.clip(values / top, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(gray)).expand(3, *gray.shape).clone()
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()


def load_image(path: str | Path, max_side: int | None = None) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1], EXIF rotation applied; longer side <= ``max_side`` when given."""
    return pil_to_tensor(_open(as_path(path, "an image"), max_side))


def mask_background(values: np.ndarray):
    """The background value of a mask: 0 wherever the mask holds a 0 (a 0/1 or 0/255 mask, however much of the image
    its defect covers), and in a mask that is 255 everywhere (the whole image a defect); otherwise its most common
    value: a label map saved with an offset (background 1, defects 2, 3, ...), where "non-zero is a defect" would
    mark every pixel."""
    flat = values.ravel()
    if not flat.all() or (flat.dtype == np.uint8 and (flat == 255).all()):
        return 0
    if flat.dtype == np.uint8:
        return int(np.bincount(flat, minlength=256).argmax())
    found, counts = np.unique(flat, return_counts=True)
    return found[counts.argmax()].item()


MASK_ASPECT_TOLERANCE = 0.02  # a mask resized with its image keeps its shape; another shape is another image's mask


def read_mask(path: str | Path, size: tuple[int, int]) -> tuple[torch.Tensor, object]:
    """(H, W) bool defect mask, resized (nearest) to the image's (H, W) if it differs, and its background value:
    every pixel that differs from the background (``mask_background``, 0 in an ordinary mask) is a defect. A mask
    whose shape (width / height) is not its image's is refused: it belongs to another image."""
    values = np.asarray(_open(Path(path)))
    if values.ndim == 3:
        values = values.max(axis=2)
    height, width = values.shape
    if abs(width / height - size[1] / size[0]) > MASK_ASPECT_TOLERANCE * size[1] / size[0]:
        raise HLGFAError(f"mask {path} is {width}x{height} pixels, a different shape from its image (aspect "
                         f"{size[1] / size[0]:.2f}); pair each image with its own mask, named <image>_mask.png.")
    background = mask_background(values)
    binary = Image.fromarray((values != background).astype(np.uint8) * 255)
    if binary.size != (size[1], size[0]):
        binary = binary.resize((size[1], size[0]), Image.NEAREST)
    return torch.from_numpy(np.asarray(binary) > 0), background


def marks_over_half(mask: torch.Tensor) -> bool:
    """Whether a defect mask covers over half of its image: a real defect rarely does, an inverted mask always."""
    return mask.float().mean().item() > 0.5


def mask_warnings(backgrounds: list[tuple[object, Path]], large: list[Path], total: int,
                  masks: list[Path] = ()) -> list[str]:
    """One line for the masks whose background is not 0, one for those that mark over half of their image, one for
    those of ``masks`` stored lossy (JPEG)."""
    lines = []
    lossy = [m for m in masks if Path(m).suffix.lower() in {".jpg", ".jpeg"}]
    if lossy:
        lines.append(f"{len(lossy)} of {total} masks (e.g. {lossy[0]}) are JPEGs: compression leaves faint values "
                     "around each defect, and every non-zero value counts as defect, which lowers pixel AUROC and "
                     "AUPRO; save masks as PNG.")
    if backgrounds:
        background, example = backgrounds[0]
        lines.append(f"{len(backgrounds)} of {total} masks (e.g. {example}) have background value {background}, not 0 "
                     f"(a label map with an offset?): {background} counts as background, every other value as defect; "
                     "save masks with 0 for good pixels to silence this.")
    if large:
        lines.append(f"{len(large)} of {total} masks (e.g. {large[0]}) mark over half of their image as defect: "
                     "every non-zero pixel is a defect (white), 0 is good (black); check that they are not inverted.")
    return lines


def load_mask(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool defect mask (see ``read_mask``); warns when the background is not 0 or the defect covers over half
    of the image (``mask_warnings``)."""
    mask, background = read_mask(path, size)
    offsets = [(background, Path(path))] if background != 0 else []
    for line in mask_warnings(offsets, [Path(path)] if marks_over_half(mask) else [], 1, [Path(path)]):
        warnings.warn(line, stacklevel=2)
    return mask


@dataclass
class LabelledImage:
    path: Path
    defect_type: str  # "good" or the name of the defect folder
    mask_path: Path | None  # None for good images

    @property
    def label(self) -> int:
        return int(self.defect_type != "good")


def find_mask(ground_truth: Path, defect_type: str, image: Path) -> Path | None:
    folder = ground_truth / defect_type
    for stem in (f"{image.stem}_mask", image.stem):
        for ext in IMAGE_EXTENSIONS:
            for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def train_image_paths(root: str | Path) -> list[Path]:
    """Good training images: ``root/train/good`` of an MVTec folder, or ``root`` itself if it holds images."""
    root = Path(root)
    if not root.is_dir():
        raise HLGFAError(f"{root} is not a folder; give an MVTec-layout category folder or a folder of good images.")
    folder = root / "train" / "good"
    if not folder.is_dir():
        if (root / "train").is_dir() or (root / "test").is_dir():
            raise HLGFAError(f"{root} has no train/good folder; put the defect-free images in {folder}.")
        folder = root
    images = list_images(folder)
    # fit reads one folder's own images, not its subfolders': say so where a subfolder holds images too
    holding = [sub for sub in sorted(folder.iterdir(), key=natural_key)
               if sub.is_dir() and not is_hidden(sub) and list_images(sub)]
    if holding and len(images) < MIN_GOOD_IMAGES:
        good = [sub for sub in holding if sub.name.lower() == "good"]
        if good and len(holding) > 1:  # an MVTec test split, good/ beside the defect types: never advise a defect
            category = folder.parent if (folder.parent / "train" / "good").is_dir() else None
            raise HLGFAError(f"{folder} looks like a test split (subfolders {named([sub.name for sub in holding])}), "
                             f"and fit trains on defect-free images only: give {category or good[0]}.")
        raise HLGFAError(f"{folder} holds {len(images)} image(s) of its own, but its subfolder {holding[0]} holds "
                         f"{len(list_images(holding[0]))}: give that folder to fit (fit reads no subfolders).")
    if holding:
        warnings.warn(f"fit reads the {len(images)} images in {folder} itself, not those in its subfolders "
                      f"({named([sub.name for sub in holding])}): move them up to train on them too.", stacklevel=2)
    return enough_to_fit(images, f"{folder} holds", f" ({', '.join(sorted(IMAGE_EXTENSIONS))})")


def good_image_paths(paths) -> list[Path]:
    """``fit``'s images: a list of image files, or a folder (``train_image_paths``: an MVTec category's train/good
    or a plain folder of images); ``HLGFAError`` for too few, or an entry that is not a file."""
    if isinstance(paths, (str, Path)):
        return train_image_paths(paths)
    try:
        paths = [Path(p) for p in paths]
    except TypeError:  # None, bytes, a number: neither a folder nor a list of files
        raise HLGFAError(f"fit takes a folder or a list of image files, got {type(paths).__name__} "
                         "(fit(model, 'path/to/bottle')).") from None
    missing = next((p for p in paths if not p.is_file()), None)
    if missing is not None:
        what = "a folder" if missing.is_dir() else "not found"
        raise HLGFAError(f"{missing} is {what}: fit takes image files, or one folder (fit(model, 'path/to/bottle')).")
    first: dict[Path, Path] = {}  # each image once, where it was first given
    for path in paths:
        first.setdefault(path.resolve(), path)
    unique = list(first.values())
    if len(unique) < len(paths):  # a held-out copy of a training image would calibrate on an image the head saw
        warnings.warn(f"{len(paths) - len(unique)} of the {len(paths)} paths given to fit name an image given before; "
                      "each image is used once.", stacklevel=2)
    return enough_to_fit(unique, "fit was given")


MIN_GOOD_IMAGES = 2  # one to train on, one held out to calibrate


def enough_to_fit(paths: list[Path], where: str, kinds: str = "") -> list[Path]:
    """``paths``, or ``HLGFAError`` when they are fewer than ``MIN_GOOD_IMAGES``."""
    if len(paths) < MIN_GOOD_IMAGES:
        raise HLGFAError(f"{where} {len(paths)} image(s); fit needs at least {MIN_GOOD_IMAGES} defect-free images "
                         f"(one to train on, one held out to calibrate){kinds}.")
    return paths


def evenly_spaced(paths: list[Path], count: int) -> list[Path]:
    """``count`` of ``paths`` at evenly spaced positions of their order (first and last included): a small training
    set that spans a capture session instead of its first minutes."""
    if count >= len(paths):
        return list(paths)
    if count < 2:
        raise HLGFAError(f"a training subset needs at least 2 images, got {count}.")
    return [paths[round(i * (len(paths) - 1) / (count - 1))] for i in range(count)]


def load_test_split(root: str | Path, require_defects: bool = True) -> list[LabelledImage]:
    """All test images of an MVTec folder with their masks, each pair checked by name."""
    root = Path(root)
    test, ground_truth = root / "test", root / "ground_truth"
    if not test.is_dir():
        raise HLGFAError(f"{root} has no test/ folder; evaluation needs the MVTec layout "
                         "(test/good, test/<defect>, ground_truth/<defect>/<name>_mask.png).")
    samples: list[LabelledImage] = []
    for folder in sorted((p for p in test.iterdir() if p.is_dir()), key=natural_key):
        for image in list_images(folder):
            mask = None
            if folder.name != "good":
                mask = find_mask(ground_truth, folder.name, image)
                if mask is None:
                    raise HLGFAError(f"defect image {image} has no mask; expected "
                                     f"{ground_truth / folder.name / (image.stem + '_mask.png')}.")
            samples.append(LabelledImage(image, folder.name, mask))
    if not any(s.label == 0 for s in samples):
        raise HLGFAError(f"{test / 'good'} holds no images; evaluation needs defect-free test images too.")
    if require_defects and not any(s.label == 1 for s in samples):
        raise HLGFAError(f"{test} holds no defective images; add test/<defect type>/ folders with their masks.")
    warn_of_unmatched_masks(ground_truth, {s.mask_path for s in samples if s.mask_path is not None})
    return samples


def warn_of_unmatched_masks(ground_truth: Path, used: set[Path]) -> None:
    """One warning naming the masks under ``ground_truth`` that no test image matched: a renamed or removed defect
    image leaves its mask behind, and the evaluation then scores one defect fewer than the folder seems to hold."""
    if not ground_truth.is_dir():
        return
    unmatched = [f"{mask.parent.name}/{mask.name}" for folder in sorted(ground_truth.iterdir(), key=natural_key)
                 if folder.is_dir() for mask in list_images(folder) if mask not in used]
    if unmatched:
        warnings.warn(f"{len(unmatched)} masks in {ground_truth} match no test image ({named(unmatched)}); they are "
                      "not scored: restore their images or remove them.", stacklevel=3)
