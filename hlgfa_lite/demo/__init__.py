"""The Gradio demo, part of the package so an installed wheel serves it (``hlgfa-lite demo``).

``logic`` holds everything the page does as plain functions (no Gradio import); ``app`` is the Gradio layout
(``build_demo``, ``launch_demo``) and needs the ``demo`` extra. ``checkpoints/bottle_lite`` is the served model.
"""
