"""Entry point of the Hugging Face Space (``python app.py``); the demo itself is ``hlgfa_lite.demo``.

``hlgfa-lite space OUT_DIR`` writes this file into a Space folder next to a copy of the library; ``demo/app.py`` in
the repository runs it. It serves ``HLGFA_RUN_DIR`` when set, else the checkpoint bundled in the package;
``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT`` (set by a Space) choose where it listens.
"""

import logging
import os

from hlgfa_lite.demo.app import launch_demo

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    launch_demo(os.environ.get("HLGFA_RUN_DIR") or None)
