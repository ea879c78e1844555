"""Entry point of the Hugging Face Space (and of ``python app.py`` here): the demo itself is ``hlgfa_lite.demo``.

It serves ``HLGFA_RUN_DIR`` when set, else ``checkpoints/bottle_lite`` next to this file when a built Space
folder holds one, else the checkpoint bundled in the package.
"""

import logging
import os
from pathlib import Path

from hlgfa_lite.demo.app import launch_demo

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    beside = Path(__file__).resolve().parent / "checkpoints" / "bottle_lite"
    launch_demo(os.environ.get("HLGFA_RUN_DIR") or (beside if (beside / "model.json").is_file() else None))
