"""What only the lessons use: the exercises' checks and reveals (``exercises``), the small shipped heads the
lessons load instead of training (``lesson_heads``) and the benchmark results they quote (``results``)."""
