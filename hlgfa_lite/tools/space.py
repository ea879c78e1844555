"""Build a Hugging Face Space folder for the demo: ``hlgfa-lite space OUT_DIR``, from an installed package alone.

The folder holds everything the Space needs and nothing to edit:

* ``app.py`` — the thin entry point (``hlgfa_lite/demo/space/app.py``);
* ``README.md`` — the Space's README, whose YAML header configures it (``sdk_version`` = the Gradio installed here);
* ``requirements.txt`` — PyTorch CPU wheels and the library's own dependencies (read from its installed metadata);
* ``hlgfa_lite/`` — the library, copied from the installed package, with the demo's bundled checkpoint and sample
  images (the lessons' heads and the tire assets are left out: ``SPACE_ASSETS``);
* ``.gitattributes`` — binaries (checkpoint, wheels, images) through Git LFS, which the Hub requires for ``git push``
  (added to the lines of a ``.gitattributes`` already there).

Those five entries are all it writes: ``hlgfa-lite space CLONE --overwrite`` inside a clone of the Space replaces
them, each atomically, and keeps ``.git`` and every other file.

Why the library sits next to ``app.py`` instead of being a wheel named in ``requirements.txt``: a Space runs
``pip install -r requirements.txt`` with only that file mounted, before the repository is copied in, so a path to a
file in the folder is not found there. ``python app.py`` puts the folder first on ``sys.path``, so the copy imports.
"""

from __future__ import annotations

import re
import shutil
from importlib import metadata
from importlib.resources import files
from pathlib import Path

from ..errors import HLGFAError
from .checkpoint import verified_metadata
from .files import real_target, replace_entries

DISTRIBUTION = "hlgfa-lite"
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
EXTRA = "demo"  # the optional dependencies the Space needs besides the core ones
LFS_PATTERNS = ["*.safetensors", "*.whl", "*.png", "*.jpg", "*.jpeg", "*.zip"]
NOT_COPIED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi")  # caches, and stubs Gradio may write
# of the package's assets, the Space keeps what the demo serves (the bottle checkpoint and sample): the lessons' heads
# and the tire checkpoint and sample are for the notebooks, and would more than double the folder a visitor pushes
SPACE_ASSETS = {"checkpoints": {"README.md", "bottle_lite", "bottle_lite_metrics.json"}, "samples": {"bottle"}}
SPACE_ENTRIES = ("app.py", "README.md", "requirements.txt", ".gitattributes", "hlgfa_lite")  # all this builder writes


def template_dir() -> Path:
    return Path(str(files("hlgfa_lite") / "demo" / "space"))


def package_dir() -> Path:
    return Path(str(files("hlgfa_lite")))


def requirements() -> list[str]:
    """The library's core requirements plus those of the ``demo`` extra, as the installed metadata lists them."""
    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        raise HLGFAError(f"{DISTRIBUTION} is not installed (only importable from a source tree): install it with "
                         "pip install -e . (or the wheel), then run hlgfa-lite space again.") from None
    kept = []
    for line in declared:
        requirement, _, marker = (part.strip() for part in line.partition(";"))
        if not marker or re.fullmatch(rf"extra\s*==\s*['\"]{EXTRA}['\"]", marker):
            kept.append(requirement.replace(" ", ""))
    return kept


def requirements_text() -> str:
    torch_first = sorted(requirements(), key=lambda r: (not r.startswith(("torch>", "torch=", "torchvision")), r))
    return "\n".join([
        "# Hugging Face Space requirements, written by `hlgfa-lite space`. The library itself is the hlgfa_lite/",
        "# folder next to app.py; these are its dependencies. CPU wheels of PyTorch (a free Space has no GPU):",
        f"--extra-index-url {CPU_TORCH_INDEX}",
        *torch_first, ""])


# files of the repository that the Space README names; the Space folder holds none of them, so each becomes a link
REPOSITORY_PATH = re.compile(r"`((?:benchmarks|notebooks|scripts|tests)/[^`\s]+)`")


def readme_text() -> str:
    text = (template_dir() / "README.md").read_text()
    try:  # the Space installs Gradio from sdk_version: use the one this demo ran with here
        text = re.sub(r"(?m)^sdk_version: .*$", f"sdk_version: {metadata.version('gradio')}", text, count=1)
    except metadata.PackageNotFoundError:
        pass
    from ..demo.examples import code_url

    repository = code_url()
    if repository:  # a visitor of the Space can follow them to the repository
        text = REPOSITORY_PATH.sub(lambda m: f"[`{m[1]}`]({repository}/blob/main/{m[1]})", text)
    return text


def gitattributes_text(existing: str = "") -> str:
    """Our LFS patterns after the lines already there (a Space clone's own .gitattributes stays as it was)."""
    kept = [line for line in existing.splitlines() if line.strip()]
    ours = [f"{pattern} filter=lfs diff=lfs merge=lfs -text" for pattern in LFS_PATTERNS]
    declared = {line.split()[0] for line in kept if "filter=lfs" in line}
    return "".join(f"{line}\n" for line in kept + [line for line in ours if line.split()[0] not in declared])


def _existing_text(path: Path) -> str:
    try:
        return path.read_text() if path.is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise HLGFAError(f"{path} cannot be read ({exc}); fix or remove it, then run again.") from None


def shipped_checkpoints() -> list[Path]:
    """The checkpoint folders the Space carries (``SPACE_ASSETS``)."""
    folder = package_dir() / "assets" / "checkpoints"
    return [folder / name for name in sorted(SPACE_ASSETS["checkpoints"]) if (folder / name).is_dir()]


def not_for_the_space(folder: str, names: list[str]) -> set[str]:
    """``copytree``'s ignore rule for the package: caches and stubs, and every asset the demo does not serve
    (``SPACE_ASSETS``)."""
    skipped = set(NOT_COPIED(folder, names))
    assets = package_dir().resolve() / "assets"
    here = Path(folder).resolve()
    if here == assets:
        skipped |= {name for name in names if (here / name).is_dir() and name not in SPACE_ASSETS}
    elif here.parent == assets and here.name in SPACE_ASSETS:
        skipped |= set(names) - SPACE_ASSETS[here.name]
    return skipped


def build_space(out: str | Path, overwrite: bool = False) -> Path:
    """Write the Space folder ``out``. A new folder appears whole (built beside it, then renamed); in an existing
    one (with ``overwrite``) only ``SPACE_ENTRIES`` are replaced, each atomically, and ``.git`` and every other
    file are kept. Storage errors are one line (``files``)."""
    out = Path(out)
    real = real_target(out, folder=True)
    if real.exists() and any(real.iterdir()) and not overwrite:
        raise HLGFAError(f"{out} exists and is not empty; choose another folder or pass --overwrite (which replaces "
                         f"only {', '.join(SPACE_ENTRIES)} and keeps every other file).")
    package = package_dir().resolve()
    if real / "hlgfa_lite" == package:
        raise HLGFAError(f"{out} holds the hlgfa_lite source this command copies from; write the Space elsewhere.")
    if real == package or package in real.parents:  # the copy would copy itself, deeper and deeper
        raise HLGFAError(f"{out} is inside the hlgfa_lite source this command copies ({package}); write the Space "
                         "elsewhere.")
    for checkpoint in shipped_checkpoints():  # a damaged one would fail only once the Space starts, after a push
        verified_metadata(checkpoint)
    texts = {"requirements.txt": requirements_text(), "README.md": readme_text(),
             ".gitattributes": gitattributes_text(_existing_text(real / ".gitattributes")),
             "app.py": (template_dir() / "app.py").read_text()}

    def build(staging: Path) -> None:
        for name, text in texts.items():
            (staging / name).write_text(text)
        shutil.copytree(package_dir(), staging / "hlgfa_lite", ignore=not_for_the_space)

    return replace_entries(out, build, list(SPACE_ENTRIES), what="Space folder")
