"""What only the lessons use: the exercises' checks and reveals (``exercises``) and the small shipped heads the
lessons load instead of training (``lesson_heads``)."""
