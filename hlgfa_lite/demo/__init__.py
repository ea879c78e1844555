"""The Gradio demo, part of the package so an installed wheel serves it (``hlgfa-lite demo``).

``app`` is the Gradio layout (``build_demo``, ``launch_demo``), one function per tab, and needs the ``demo`` extra.
What the page does is plain functions beside it (no Gradio import): ``uploads`` (limits, reading uploads),
``rendering`` (maps, masks, verdicts, look inside), ``visitor_fit`` (fitting a visitor's part), ``models`` (the
served model and fitted heads), ``visitor_files`` (what the demo writes and its clean-up), ``examples`` (the bundled
sample's images). The served model is the package's bundled ``bottle_lite`` checkpoint.
"""
