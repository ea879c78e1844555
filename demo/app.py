"""``python demo/app.py``: the demo from a clone, served as a Space serves it (same environment variables)."""

import runpy

if __name__ == "__main__":
    # the Space's entry point ships in the package and `hlgfa-lite space` copies it: run it, so there is one copy
    runpy.run_module("hlgfa_lite.demo.space.app", run_name="__main__")
