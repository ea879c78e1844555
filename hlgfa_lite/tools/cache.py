"""The frozen features ``fit`` trains on, held where they fit: in memory, in a file on disk, or computed on the fly.

The backbone is frozen, so the features of a fixed input never change: each training image is drawn K = 1 + c
times (the clean image, then c noise-augmented copies: ``draw_views``) and the features of every draw are computed
once (its high-res priors only if a head reads that draw: ``drawn_features``); c is ``aug_copies``, fewer on a large
set (``aug_budget`` caps the augmented draws in all: ``wanted_draws``).
With ``aug_views="both"`` a draw changes the image before both views are made (priors and target follow the
nuisance: Kp = K prior draws, or the first ``head_draws`` when a head reads only those); with ``"low"`` only the
low-res view changes and the clean priors are kept once (Kp = 1). Where the features live is decided before any
work (``plan_cache``) from the bytes of one draw and the host-memory budget ``max_cache_gib``, which covers what
``fit`` holds of the training set (uint8 images + cache):

1. ``"memory"``: images + float16 cache fit within the budget: ``FeatureCache``.
2. ``"disk"``: they do not: the same float16 values are written once to a file in a temporary folder and every read
   is an explicit ``pread`` of the rows it needs (``SpilledCache``; not an mmap, whose pages would count as this
   process's memory). Same values, read in the same order: the trained head and the normality statistics are
   bit-for-bit those of the memory cache, and every draw is kept. The file has no name from the moment it is open
   (``O_TMPFILE``, else created and unlinked at once): the system frees its blocks when the last descriptor closes,
   so a fit killed by SIGKILL or the out-of-memory killer leaves nothing behind (gigabytes, for a real set).
3. ``"on the fly"``: not even the disk has room: each batch's features are computed when it is drawn
   (``OnTheFlyFeatures``; every view > 0 is a fresh nuisance, so not bit-for-bit; slow on a CPU, fine on a GPU).
4. Stop (``HLGFAError``, one line): the budget cannot even hold the uint8 images, which every policy keeps.

All three answer the same reads: ``batch(images, views)`` for a training step, ``low_draws(rows, every)`` for the
normality term (every draw of each image, or its clean one), ``subset(rows)`` for the cross-fitted heads.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from tqdm.auto import tqdm

from ..augmentation import NoiseAugment
from ..backbone import resize
from ..config import DEFAULT_MAX_CACHE_GIB  # noqa: F401 - the default, kept with the other knobs the CLI shows
from ..data import MAX_SIDE, MIN_TRAINING_SIDE, load_image
from ..errors import HLGFAError, named
from ..model import HLGFA
from ..priors import Priors

DISK_MARGIN_BYTES = 2 ** 30  # free space the spill file leaves on its disk
GIB = 2 ** 30


def load_images(paths: list[Path], size: int) -> torch.Tensor:
    """Images resized to (size, size), stored as uint8 (N, 3, size, size) to keep memory small (one over
    ``MAX_SIDE`` is downscaled while decoding; one under ``MIN_TRAINING_SIDE`` is refused). Decoded by a few threads,
    as Pillow and torch release the GIL while they work: the same values as one after another."""
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    aspects = [1.0] * len(paths)  # width / height of each image as stored

    def load_one(i: int) -> None:
        image = load_image(paths[i], MAX_SIDE)
        height, width = image.shape[-2:]
        if min(height, width) < MIN_TRAINING_SIDE:
            raise HLGFAError(f"{paths[i]} is {width}x{height} px; a good image to learn from needs at least "
                             f"{MIN_TRAINING_SIDE} px on each side: remove it, or give it at its real size.")
        aspects[i] = width / height
        out[i] = (resize(image[None], size)[0] * 255).round().to(torch.uint8)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(load_one, range(len(paths))))  # list(): the first error is raised here, as a loop would
    warn_of_other_shapes(paths, aspects)
    warn_of_copies(paths, out)
    return out


def warn_of_copies(paths: list[Path], images: torch.Tensor) -> None:
    """One warning naming the images whose pixels (uint8, at the working size) equal an earlier image's: a copy held
    out calibrates the threshold on an image the head trained on, and copies trained on count twice. Compared on
    every 4th pixel of each axis, which no two real photographs share."""
    first: dict[bytes, Path] = {}
    copies = []
    for path, image in zip(paths, images):
        key = hashlib.blake2b(image[:, ::4, ::4].contiguous().numpy().tobytes(), digest_size=16).digest()
        if key in first:
            copies.append(f"{path.name} = {first[key].name}")
        else:
            first[key] = path
    if copies:
        warnings.warn(f"{len(copies)} of {len(paths)} good images are copies of another ({named(copies)}): a "
                      "held-out copy calibrates the threshold on an image the head trained on; remove the copies.",
                      stacklevel=3)


ASPECT_TOLERANCE = 0.1  # aspect ratios within 10 % of the set's median count as the same shape


def warn_of_other_shapes(paths: list[Path], aspects: list[float]) -> None:
    """One warning naming the few images (under a quarter of them) whose aspect ratio differs from most by over
    ``ASPECT_TOLERANCE``. Every image is stretched to a square: a part of another shape reaches the head distorted,
    and a distorted good image that is held out or cross-fitted scores high and lifts the threshold over real
    defects. Where shapes vary throughout (the magnetic tile's crops), stretching is the set's norm: no warning."""
    typical = sorted(aspects)[len(aspects) // 2]
    others = [p for p, a in zip(paths, aspects) if abs(math.log(a / typical)) > math.log(1 + ASPECT_TOLERANCE)]
    if 0 < len(others) < len(paths) / 4:
        warnings.warn(f"{len(others)} of {len(paths)} good images have another aspect ratio than most "
                      f"({named([p.name for p in others])}): "
                      "each image is stretched to a square, which distorts these and raises the threshold; crop "
                      "them like the others or leave them out.", stacklevel=3)


def to_working(features: torch.Tensor, device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Held features (float16, any layout) -> ``dtype`` on ``device``, channels-last: the head's layout, reached in
    the one copy the cast makes anyway (a second copy to change the layout cost as much as the layout saved). Every
    cache hands out the same layout, so a fit gives the same model bit for bit whichever cache held its features."""
    return features.to(device, dtype, memory_format=torch.channels_last)


def channels_last_storage(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty float16 (N, K, C, h, w) tensor whose channels lie innermost in memory (as (N, K, h, w, C)): what the
    backbone hands over and what the head reads, so a draw goes in and out with a cast and no transposition
    (benchmarks/probes/head_step_layout.py; RESULTS.md, "Fit")."""
    n, k, c, h, w = shape
    return torch.empty((n, k, h, w, c), dtype=torch.float16).permute(0, 1, 4, 2, 3)


def prior_tensors(priors: list[Priors]) -> list[torch.Tensor]:
    """Priors per level -> [structure, detail, target] * levels: the order they are stored and read in."""
    return [t for p in priors for t in (p.structure, p.detail, p.target)]


def working_priors(tensors: list[torch.Tensor], device, conv_dtype: torch.dtype) -> list[Priors]:
    """[structure, detail, target] * levels (held) -> Priors per level on ``device``. The structure and detail
    priors go only into the head's convolutions, so under bfloat16 autocast they are read as bfloat16 at once:
    float16 -> bfloat16 rounds once, as float16 -> float32 -> bfloat16 does, so the head computes the same values
    without a float32 copy of the largest tensors of a step (the detail prior has C r^2 channels). The target enters
    the loss, which runs in float32."""
    dtypes = (conv_dtype, conv_dtype, torch.float32)
    return [Priors(*(to_working(t, device, dtype) for t, dtype in zip(tensors[i:i + 3], dtypes)))
            for i in range(0, len(tensors), 3)]


def as_float(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float() / 255


def draw_views(model: HLGFA, clean: torch.Tensor, copies: int,
               augment: NoiseAugment | None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """clean (b, 3, hr, hr) -> (high views, low views): the clean pair, then ``copies - 1`` augmented ones.

    With ``aug_views="both"`` the nuisance hits the image first and both views are made from it (K high views);
    with ``"low"`` only the low view changes and the clean high view is shared (one high view)."""
    cfg = model.cfg
    high_views, low_views = [clean], [resize(clean, cfg.lr_size)]
    for _ in range(copies - 1):
        if cfg.aug_views == "both":
            noisy = torch.stack([augment(img) for img in clean.cpu()]).to(model.device)
            high_views.append(noisy)
            low_views.append(resize(noisy, cfg.lr_size))
        else:
            low_views.append(torch.stack([augment(img) for img in low_views[0].cpu()]).to(model.device))
    return high_views, low_views


def wanted_draws(cfg, n_images: int) -> int:
    """K = 1 + c draws per image, c = min(aug_copies, max(1, aug_budget // n_images)) (1 without augmentation).

    Every draw costs a backbone pass at both resolutions, the bulk of a fit on a large set, so a budget saves time
    there; but fewer copies cost the magnetic tile 0.4 (two copies) to 0.7 (one) image-AUROC points, so ``lite``
    keeps every copy (budget 0; RESULTS.md, "Augmented draws"). Every image keeps at least one augmented copy."""
    if not cfg.noise_aug:
        return 1
    if cfg.aug_budget == 0 or n_images == 0:
        return 1 + cfg.aug_copies
    return 1 + min(cfg.aug_copies, max(1, cfg.aug_budget // n_images))


def held_prior_draws(cfg, draws: int) -> int:
    """Kp: the draws of each image whose high-res priors are held. With ``aug_views="both"`` every draw has priors
    of its own, but a head reads only the first ``head_draws`` of them (``training.head_reads``; 0: all); with
    ``"low"`` (or no augmentation) the clean priors serve every draw."""
    if not (cfg.noise_aug and cfg.aug_views == "both"):
        return 1
    return min(draws, cfg.head_draws) if cfg.head_draws else draws


@torch.no_grad()
def drawn_features(model: HLGFA, hr_images: torch.Tensor, batch_size: int = 1, progress: bool = True,
                   wanted: torch.Tensor | None = None) -> Iterator[tuple[int, list[Priors], list[torch.Tensor]]]:
    """(start, priors [level] (b, Kp, ...), lows [level] (b, K, C, h, w)) for each chunk of ``batch_size`` images,
    in order; one seeded ``NoiseAugment`` for the whole pass, so every holder gets the same draws.

    ``wanted`` (N, Kp) bool (None: all): the draws whose priors are computed (a chunk's draw k for all its images
    when one of them is wanted); the others' are zero and cost no high-res backbone pass (``training.wanted_priors``:
    no head reads them). Every nuisance is still drawn, in the same order, so each computed draw has the values it
    would have had."""
    cfg = model.cfg
    augment = NoiseAugment(cfg) if cfg.noise_aug else None
    copies = wanted_draws(cfg, len(hr_images))
    unread: list[Priors] | None = None  # zero priors of one draw, made once

    def priors_of(view: torch.Tensor, rows: slice, draw: int) -> list[Priors]:
        nonlocal unread
        if wanted is None or wanted[rows, draw].any():
            return model.priors(model.backbone(view))
        if unread is None:
            unread = [p.apply(torch.zeros_like) for p in model.priors(model.backbone(torch.zeros_like(view[:1])))]
        return [p.apply(lambda t: t.expand(len(view), *t.shape[1:])) for p in unread]

    for start in tqdm(range(0, len(hr_images), batch_size), desc="caching features", disable=not progress,
                      leave=False):
        rows = slice(start, start + batch_size)
        clean = as_float(hr_images[rows]).to(model.device)  # (b, 3, hr, hr)
        high_views, low_views = draw_views(model, clean, copies, augment)
        held = high_views[:held_prior_draws(cfg, copies)]  # the later draws only feed the normality term
        high_priors = [priors_of(view, rows, draw) for draw, view in enumerate(held)]  # [draw][level]
        priors = [Priors.stack(list(level)) for level in zip(*high_priors)]  # [level] (b, Kp, ...)
        lows = [torch.stack(level, dim=1) for level in zip(*(model.backbone(v) for v in low_views))]  # (b, K, ...)
        yield start, priors, lows


@dataclass
class FeatureCache:
    """Frozen features of the training images, float16 on the CPU: computed once, read every step.

    K draws per image (clean + augmented); the priors have K draws too when the nuisance reached both views,
    else one (clean) draw shared by all K low-res draws."""

    priors: list[Priors]  # per level; structure (N, Kp, C, h, w), detail (N, Kp, C r^2, h, w), target (N, Kp, C, h, w)
    low: list[torch.Tensor]  # per level (N, K, C, h, w): K low-res draws

    @property
    def n_images(self) -> int:
        return self.low[0].shape[0]

    @property
    def draws(self) -> int:
        return self.low[0].shape[1]

    def batch(self, images: torch.Tensor, views: torch.Tensor, device,
              conv_dtype: torch.dtype = torch.float32) -> tuple[list[torch.Tensor], list[Priors]]:
        """Draw ``views[i]`` of image ``images[i]``, as (B, C, h, w) tensors on ``device``: float32, the structure and
        detail priors in ``conv_dtype`` (``working_priors``)."""
        prior_views = views % self.priors[0].target.shape[1]  # Kp = 1: always the clean draw
        held = [t[images, prior_views] for t in prior_tensors(self.priors)]
        return [to_working(t[images, views], device) for t in self.low], working_priors(held, device, conv_dtype)

    def low_draws(self, rows: slice, every: bool, device) -> list[torch.Tensor]:
        """Low-res features of images ``rows``, float32 per level: every draw (b * K, C, h, w), image after image,
        or the clean draw only (b, C, h, w)."""
        return [to_working(level[rows].flatten(0, 1) if every else level[rows, 0], device) for level in self.low]

    def subset(self, rows: torch.Tensor) -> "FeatureCache":
        """The cache of the images ``rows`` only (a copy)."""
        return FeatureCache([p.apply(lambda t: t[rows]) for p in self.priors], [t[rows] for t in self.low])

    def close(self) -> None:
        pass


@torch.no_grad()
def cache_features(model: HLGFA, hr_images: torch.Tensor, batch_size: int = 1, progress: bool = True,
                   wanted: torch.Tensor | None = None) -> FeatureCache:
    """hr_images uint8 (N, 3, hr, hr) -> the priors of F_H and the features F_L of K draws each, in memory (the
    priors of the ``wanted`` draws only, as ``drawn_features`` says).

    One image at a time by default: on a CPU, 512 px batches of 8 measured slower per image than single images."""
    cache: FeatureCache | None = None
    for start, priors, lows in drawn_features(model, hr_images, batch_size, progress, wanted):
        if cache is None:  # the first chunk tells every shape: allocate the whole cache once, then fill it in place
            # (collecting chunks and concatenating them would hold the cache twice at the end)

            def allocate(t: torch.Tensor) -> torch.Tensor:
                return channels_last_storage((len(hr_images), *t.shape[1:]))

            cache = FeatureCache(priors=[p.apply(allocate) for p in priors], low=[allocate(t) for t in lows])
        rows = slice(start, start + len(lows[0]))
        for stored, new in zip(cache.priors, priors):
            stored.structure[rows], stored.detail[rows], stored.target[rows] = new.structure, new.detail, new.target
        for stored, new in zip(cache.low, lows):
            stored[rows] = new
    return cache


def _record(tensors: list[torch.Tensor]) -> torch.Tensor:
    """[(b, K, C, h, w)] -> (b, K, sum of the per-draw sizes) float16: one draw's tensors side by side, each with
    its channels innermost (h, w, C), as ``SpilledCache._split`` reads them back."""
    return torch.cat([t.permute(0, 1, 3, 4, 2).flatten(2).to(torch.float16) for t in tensors], dim=2).cpu().contiguous()


class SpilledCache:
    """The ``FeatureCache`` of the same images in one file, read back with explicit reads (``os.preadv``).

    File layout (float16): N * K low records, then N * Kp prior records; record (i, k) holds draw k of image i,
    its tensors side by side, each (h, w, C) (low: F_L of each level; prior: structure, detail, target of each
    level). Rows of one image's draws are adjacent, so every draw of a run of images is one read. ``fd`` is the open,
    nameless file (``anonymous_file``); ``index`` maps this view's images to the file's (``subset`` shares the file
    through a descriptor of its own)."""

    def __init__(self, fd: int, folder: Path, n_images: int, draws: int, prior_draws: int,
                 low_shapes: list[tuple[int, ...]], prior_shapes: list[tuple[int, ...]]):
        self.fd, self.folder = fd, Path(folder)
        self.n_file, self.draws, self.prior_draws = n_images, draws, prior_draws
        self.low_shapes, self.prior_shapes = low_shapes, prior_shapes  # per tensor, one draw: (C, h, w)
        self.low_numel = sum(math.prod(s) for s in low_shapes)
        self.prior_numel = sum(math.prod(s) for s in prior_shapes)
        self.prior_base = n_images * draws * self.low_numel * 2  # bytes before the first prior record
        self.index = torch.arange(n_images)

    @property
    def n_images(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        """Size of the file on disk."""
        return os.fstat(self.fd).st_size

    def _read(self, offsets: list[int], numel: int) -> torch.Tensor:
        """len(offsets) runs of ``numel`` float16 values -> (len(offsets), numel)."""
        out = torch.empty(len(offsets), numel, dtype=torch.float16)
        view = out.numpy()
        for row, offset in enumerate(offsets):
            buffer, done = memoryview(view[row]).cast("B"), 0
            while done < len(buffer):  # a read may return less than asked
                got = os.preadv(self.fd, [buffer[done:]], offset + done)
                if got <= 0:
                    raise HLGFAError(f"the feature cache file in {self.folder} ended early; run fit again.")
                done += got
        return out

    @staticmethod
    def _split(flat: torch.Tensor, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
        """(b, record) -> [(b, C, h, w)], channels-last views of the records ``_record`` wrote."""
        parts = torch.split(flat, [math.prod(s) for s in shapes], dim=1)
        return [part.reshape(len(flat), h, w, c).permute(0, 3, 1, 2) for part, (c, h, w) in zip(parts, shapes)]

    def batch(self, images: torch.Tensor, views: torch.Tensor, device,
              conv_dtype: torch.dtype = torch.float32) -> tuple[list[torch.Tensor], list[Priors]]:
        """As ``FeatureCache.batch``: draw ``views[i]`` of image ``images[i]`` on ``device``."""
        rows = self.index[images].tolist()
        low_bytes, prior_bytes = self.low_numel * 2, self.prior_numel * 2
        prior_views = (views % self.prior_draws).tolist()  # Kp = 1: always the clean draw
        low = self._read([(r * self.draws + v) * low_bytes for r, v in zip(rows, views.tolist())], self.low_numel)
        prior = self._read([self.prior_base + (r * self.prior_draws + v) * prior_bytes
                            for r, v in zip(rows, prior_views)], self.prior_numel)
        return ([to_working(t, device) for t in self._split(low, self.low_shapes)],
                working_priors(self._split(prior, self.prior_shapes), device, conv_dtype))

    def low_draws(self, rows: slice, every: bool, device) -> list[torch.Tensor]:
        """As ``FeatureCache.low_draws``: every draw (b * K, C, h, w), image after image, or the clean one."""
        files = self.index[rows].tolist()
        draws = range(self.draws) if every else range(1)
        offsets = [(r * self.draws + k) * self.low_numel * 2 for r in files for k in draws]
        return [to_working(t, device) for t in self._split(self._read(offsets, self.low_numel), self.low_shapes)]

    def subset(self, rows: torch.Tensor) -> "SpilledCache":
        """The images ``rows`` only: the same file, read through a narrower index and a descriptor of its own."""
        view = SpilledCache(os.dup(self.fd), self.folder, self.n_file, self.draws, self.prior_draws,
                            self.low_shapes, self.prior_shapes)
        view.index = self.index[rows]
        return view

    def close(self) -> None:
        """Close this view's descriptor; the system frees the file when the last one closes."""
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self):
        self.close()


def anonymous_file(folder: str | Path) -> int:
    """A descriptor of a new, empty read-write file in ``folder`` that has no name: ``O_TMPFILE`` where the file
    system has it (never named at all), else a file created and unlinked at once (named for microseconds)."""
    if hasattr(os, "O_TMPFILE"):
        try:
            return os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    fd, name = tempfile.mkstemp(prefix="hlgfa-features-", suffix=".f16", dir=folder)
    try:
        os.unlink(name)
    except OSError:
        os.close(fd)
        raise
    return fd


@torch.no_grad()
def spill_features(model: HLGFA, hr_images: torch.Tensor, folder: str | Path | None = None, batch_size: int = 1,
                   progress: bool = True, wanted: torch.Tensor | None = None) -> SpilledCache:
    """The same features as ``cache_features``, written once to a nameless file in ``folder`` (default: the
    system's temporary folder); the file is gone when the returned cache (and every subset) is closed, or when
    this process ends, however it ends."""
    folder = Path(folder or tempfile.gettempdir())
    n = len(hr_images)
    try:
        fd = anonymous_file(folder)
    except OSError as exc:
        raise HLGFAError(f"cannot create the feature cache in {folder} ({exc.strerror or exc}); choose another "
                         "folder (--cache-dir) or raise --max-cache-gib.") from None
    try:
        shapes = None
        for start, priors, lows in drawn_features(model, hr_images, batch_size, progress, wanted):
            held = prior_tensors(priors)
            if shapes is None:
                draws, prior_draws = lows[0].shape[1], held[0].shape[1]
                shapes = [tuple(t.shape[2:]) for t in lows], [tuple(t.shape[2:]) for t in held]
                low_bytes = draws * sum(math.prod(s) for s in shapes[0]) * 2  # one image, every draw
                prior_bytes = prior_draws * sum(math.prod(s) for s in shapes[1]) * 2
            _write(fd, _record(lows), start * low_bytes)
            _write(fd, _record(held), n * low_bytes + start * prior_bytes)
    except OSError as exc:
        os.close(fd)
        raise HLGFAError(f"cannot write the feature cache in {folder} ({exc.strerror or exc}); free some disk "
                         "space there, choose another folder (--cache-dir) or raise --max-cache-gib.") from None
    except BaseException:
        os.close(fd)
        raise
    return SpilledCache(fd, folder, n, draws, prior_draws, *shapes)


def _write(fd: int, record: torch.Tensor, offset: int) -> None:
    buffer, done = memoryview(record.numpy()).cast("B"), 0
    while done < len(buffer):
        done += os.pwrite(fd, buffer[done:], offset + done)


@dataclass
class OnTheFlyFeatures:
    """What the cache would hold, computed for each batch when it is drawn (not even the disk has room for it).

    View 0 is the clean image; any other view is a fresh nuisance draw, so K = ``draws`` keeps the cache's mix of
    clean and augmented views. Holds only the uint8 images: memory does not grow with the backbone's width."""

    model: HLGFA
    hr_images: torch.Tensor  # uint8 (N, 3, hr, hr)
    draws: int  # K: views are sampled from 0..K-1 as from a cache of K draws
    augment: NoiseAugment | None

    @property
    def n_images(self) -> int:
        return len(self.hr_images)

    @torch.no_grad()
    def batch(self, images: torch.Tensor, views: torch.Tensor, device,
              conv_dtype: torch.dtype = torch.float32) -> tuple[list[torch.Tensor], list[Priors]]:
        """As ``FeatureCache.batch``, computed now."""
        cfg, model = self.model.cfg, self.model
        high = as_float(self.hr_images[images]).to(model.device)  # (B, 3, hr, hr)
        low = resize(high, cfg.lr_size)  # (B, 3, lr, lr)
        noisy = (views > 0).tolist()
        if self.augment is not None and any(noisy):
            both = cfg.aug_views == "both"
            for i in [i for i, flag in enumerate(noisy) if flag]:
                if both:  # the nuisance first, then both views from the changed image
                    high[i] = self.augment(high[i].cpu()).to(model.device)
                    low[i] = resize(high[i:i + 1], cfg.lr_size)[0]
                else:
                    low[i] = self.augment(low[i].cpu()).to(model.device)
        held = prior_tensors(model.priors(model.backbone(high)))
        return [to_working(f, device) for f in model.backbone(low)], working_priors(held, device, conv_dtype)

    @torch.no_grad()
    def low_draws(self, rows: slice, every: bool, device) -> list[torch.Tensor]:
        """As ``FeatureCache.low_draws``, computed now: every draw is the clean one then K - 1 fresh nuisances."""
        clean = as_float(self.hr_images[rows]).to(self.model.device)  # (b, 3, hr, hr)
        copies = self.draws if every and self.augment is not None else 1
        _, low_views = draw_views(self.model, clean, copies, self.augment)
        levels = zip(*(self.model.backbone(view) for view in low_views))  # [level][draw] (b, C, h, w)
        return [to_working(torch.stack(level, dim=1).flatten(0, 1), device) for level in levels]

    def subset(self, rows: torch.Tensor) -> "OnTheFlyFeatures":
        return OnTheFlyFeatures(self.model, self.hr_images[rows], self.draws, self.augment)

    def close(self) -> None:
        pass


@dataclass
class CachePlan:
    """Where ``fit`` holds the frozen features, decided before any work from the sizes of one draw."""

    policy: str  # "memory", "disk", "on the fly", or "stop" (not even the images fit within the budget)
    n_images: int
    draws: int  # K draws per image (``wanted_draws``)
    prior_draws: int  # Kp: the draws whose priors are held (``held_prior_draws``)
    low_bytes: int  # one draw of one image's low-res features, float16
    prior_bytes: int  # one draw of one image's priors, float16
    image_bytes: int  # the uint8 training images, held by every policy
    budget_bytes: int
    folder: str  # where a spill file goes
    disk_free_bytes: int

    @property
    def cache_bytes(self) -> int:
        return self.n_images * (self.draws * self.low_bytes + self.prior_draws * self.prior_bytes)

    @property
    def host_bytes(self) -> int:
        """What fit holds of the training set in memory under this plan (the model and one batch come on top)."""
        return self.image_bytes + (self.cache_bytes if self.policy == "memory" else 0)

    def describe(self) -> str:
        """One line: how much memory, which policy, and why."""
        cache = (f"the feature cache ({self.n_images} images x {self.draws} draws, float16) takes "
                 f"{self.cache_bytes / GIB:.2f} GiB")
        budget = f"the {size_text(self.budget_bytes)} budget (--max-cache-gib)"
        held = f"fit holds {self.host_bytes / GIB:.2f} GiB of training data in memory"
        if self.policy == "memory":
            return f"{held} ({cache}, images {self.image_bytes / GIB:.2f} GiB), within {budget}: cache in memory"
        if self.policy == "disk":
            return (f"{held} (the images): {cache}, over {budget}, so it is written once to a temporary file in "
                    f"{self.folder} ({size_text(self.disk_free_bytes)} free) and read back batch by batch "
                    "(every draw kept: the same head as in memory)")
        if self.policy == "on the fly":
            return (f"{held} (the images): {cache}, over {budget} and more than the "
                    f"{size_text(self.disk_free_bytes)} free in {self.folder} (--cache-dir), so features are "
                    "computed on the fly at each step (every draw kept as fresh nuisances; slow on a CPU, fine on a GPU)")
        return (f"fit cannot start: its {self.n_images} training images alone take {self.image_bytes / GIB:.2f} GiB "
                f"(uint8), over {budget}; raise --max-cache-gib or fit on fewer images.")


def size_text(n_bytes: int) -> str:
    """A budget or free space for a person: GiB to one decimal, or whole MiB below a tenth of a GiB (where "0.0 GiB"
    would hide a budget of 30 MiB or a nearly full disk)."""
    return f"{n_bytes / 2 ** 20:.0f} MiB" if n_bytes < GIB / 10 else f"{n_bytes / GIB:.1f} GiB"


@torch.no_grad()
def draw_bytes(model: HLGFA) -> tuple[int, int]:
    """Bytes of one cached draw of one image, in float16: (low-res features, high-res priors), from the shapes a
    blank image produces."""
    cfg = model.cfg
    blank = torch.zeros(1, 3, cfg.hr_size, cfg.hr_size, device=model.device)
    priors = model.priors(model.backbone(blank))
    low = model.backbone(resize(blank, cfg.lr_size))
    prior_values = sum(t.numel() for t in prior_tensors(priors))
    return 2 * sum(f.numel() for f in low), 2 * prior_values


def plan_cache(model: HLGFA, n_images: int, max_cache_gib: float = DEFAULT_MAX_CACHE_GIB,
               folder: str | Path | None = None) -> CachePlan:
    """The first policy that fits: memory (images + cache within ``max_cache_gib``), disk (the cache on the disk of
    ``folder``, default the system's temporary folder, leaving 1 GiB free), on the fly, else stop."""
    cfg = model.cfg
    draws = wanted_draws(cfg, n_images)
    prior_draws = held_prior_draws(cfg, draws)
    low, prior = draw_bytes(model)
    if folder is not None and not Path(folder).is_dir():  # a mistyped --cache-dir: said now, whatever the plan
        raise HLGFAError(f"the cache folder {folder} (--cache-dir) is not an existing folder; create it or give "
                         "another.")
    folder = str(folder or tempfile.gettempdir())
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # the temporary folder removed under us: no room known
        free = 0
    plan = CachePlan("memory", n_images, draws, prior_draws, low, prior, n_images * 3 * cfg.hr_size ** 2,
                     int(max_cache_gib * GIB), folder, free)
    if plan.image_bytes > plan.budget_bytes:
        plan.policy = "stop"
    elif plan.image_bytes + plan.cache_bytes > plan.budget_bytes:
        plan.policy = "disk" if plan.cache_bytes + DISK_MARGIN_BYTES <= free else "on the fly"
    return plan


def hold_features(model: HLGFA, hr_images: torch.Tensor, plan: CachePlan, progress: bool = True,
                  wanted: torch.Tensor | None = None) -> FeatureCache | SpilledCache | OnTheFlyFeatures:
    """The features of ``hr_images`` held as ``plan`` says (``close()`` them when done); a held cache computes the
    priors of the ``wanted`` draws only (``drawn_features``), features on the fly are computed when read."""
    if plan.policy == "stop":
        raise HLGFAError(plan.describe())
    if plan.policy == "memory":
        return cache_features(model, hr_images, progress=progress, wanted=wanted)
    if plan.policy == "disk":
        return spill_features(model, hr_images, plan.folder, progress=progress, wanted=wanted)
    return OnTheFlyFeatures(model, hr_images, plan.draws, NoiseAugment(model.cfg) if model.cfg.noise_aug else None)
