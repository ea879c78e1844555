"""hlgfa_lite: a compact, documented PyTorch reconstruction of HLGFA (arXiv 2602.09524).

    from hlgfa_lite import HLGFA, preset, fit, save, load
    model = HLGFA(preset("lite"))
    fit(model, train_image_paths("path/to/bottle"))
    inspection = model.inspect(images)       # features, priors, gates, per-level and fused maps

Each name below is imported from its module when first used, so ``hlgfa-lite`` reads its arguments, and answers
Ctrl-C, before torch has loaded (a few seconds on a small machine).
"""

from importlib import import_module

from ._version import __version__

_HOME = {"HLGFAConfig": "config", "preset": "config", "HLGFAError": "errors", "HLGFA": "model",
         "Inspection": "model", "load_image": "data", "load_test_split": "data", "train_image_paths": "data",
         "fit": "training", "evaluate": "evaluation", "evaluate_samples": "evaluation", "load": "tools.checkpoint",
         "save": "tools.checkpoint"}  # public name -> the module that defines it

__all__ = [*_HOME, "__version__"]


def __getattr__(name: str):
    """A public name (``_HOME``) or a submodule (``hlgfa_lite.training``), imported at its first use."""
    if name in _HOME:
        value = getattr(import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value  # later uses are plain attribute reads
        return value
    if not name.startswith("_"):
        try:
            return import_module(f".{name}", __name__)
        except ModuleNotFoundError as missing:
            if missing.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
