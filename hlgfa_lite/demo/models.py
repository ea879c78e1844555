"""The models the demo serves: the bundled (or given) checkpoint, loaded once, and the heads visitors fit, kept in
memory least-recently-used and reloaded from their folders when dropped."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from ..assets import bundled_checkpoint
from ..errors import HLGFAError
from ..model import HLGFA
from ..tools.checkpoint import load

BUNDLED_CHECKPOINT = bundled_checkpoint()
CUSTOM_MODELS_KEPT = 4  # fitted heads kept in memory across sessions (least recently used dropped)


def _tensors_hash(run_dir: Path) -> str | None:
    """The checkpoint's recorded hash of its head tensors (None when it records none)."""
    try:
        return json.loads((Path(run_dir) / "model.json").read_text()).get("tensors_sha256")
    except (OSError, ValueError):
        return None


class ModelStore:
    """The served model, loaded once, plus the heads visitors fit, kept least-recently-used.

    Inference is read-only (eval mode, no grad), so one model object serves concurrent requests safely."""

    def __init__(self, run_dir: str | Path | None = None, device: str = "cpu"):
        self.run_dir = Path(run_dir) if run_dir else BUNDLED_CHECKPOINT
        self.device = device
        self.model = load(self.run_dir, device=device)
        # a copy of the bundled head (e.g. the one in a Space folder) is still "the bottle model"
        served = _tensors_hash(self.run_dir)
        self.is_bundled = served is not None and served == _tensors_hash(BUNDLED_CHECKPOINT)
        self._custom: OrderedDict[str, HLGFA] = OrderedDict()
        self._lock = threading.Lock()
        self.fit_slot = threading.Lock()  # one visitor fit at a time, held until the fit has really stopped

    def warm_up(self) -> None:
        """Trace the backbone for both view sizes now, not in the first visitor's request."""
        self.model.predict([torch.rand(3, 64, 64)])

    def add_custom(self, run_dir: str | Path, model: HLGFA) -> None:
        with self._lock:
            self._custom[str(run_dir)] = model.eval()
            self._custom.move_to_end(str(run_dir))
            while len(self._custom) > CUSTOM_MODELS_KEPT:
                self._custom.popitem(last=False)

    def drop_custom(self, run_dir: str | Path) -> None:
        with self._lock:
            self._custom.pop(str(run_dir), None)

    def custom(self, run_dir: str | Path) -> HLGFA:
        """A fitted head by its checkpoint folder; reloaded from disk if it was dropped from memory."""
        key = str(run_dir)
        with self._lock:
            if key in self._custom:
                self._custom.move_to_end(key)
                return self._custom[key]
        if not Path(key).is_dir():
            raise HLGFAError("Your fitted part is no longer on the server (the session expired); please fit again.")
        model = load(key, device=self.device)
        self.add_custom(key, model)
        return model
