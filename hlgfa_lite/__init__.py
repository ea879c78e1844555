"""hlgfa_lite: a compact, documented PyTorch reconstruction of HLGFA (arXiv 2602.09524).

    from hlgfa_lite import HLGFA, preset, fit, save, load
    model = HLGFA(preset("lite"))
    fit(model, train_image_paths("path/to/bottle"))
    inspection = model.inspect(images)       # features, priors, gates, per-level and fused maps
"""

from ._version import __version__
from .config import HLGFAConfig, preset  # noqa: E402
from .errors import HLGFAError  # noqa: E402
from .model import HLGFA, Inspection  # noqa: E402
from .data import load_image, load_test_split, train_image_paths  # noqa: E402
from .training import fit  # noqa: E402
from .evaluation import evaluate, evaluate_samples  # noqa: E402
from .tools.checkpoint import load, save  # noqa: E402

__all__ = ["HLGFA", "HLGFAConfig", "HLGFAError", "Inspection", "evaluate", "evaluate_samples", "fit", "load",
           "load_image", "preset", "save", "load_test_split", "train_image_paths", "__version__"]
