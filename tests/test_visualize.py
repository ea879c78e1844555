"""Pictures of maps: the outline of a true-defect mask."""

import numpy as np
import pytest

from hlgfa_lite.tools.visualize import outline


def four_neighbour_border(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with an up/down/left/right neighbour outside the mask; beyond the edge counts as inside."""
    padded = np.pad(mask, 1, constant_values=True)
    inner = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def drawn_pixels(mask: np.ndarray) -> np.ndarray:
    picture = np.zeros((*mask.shape, 3), dtype=np.uint8)
    return (outline(picture, mask, (255, 0, 0)) != 0).any(-1)


def test_a_square_gets_its_ring_and_keeps_its_inside():
    mask = np.zeros((5, 5), dtype=bool)
    mask[1:4, 1:4] = True
    expected = mask.copy()
    expected[2, 2] = False
    assert np.array_equal(drawn_pixels(mask), expected)


def test_a_defect_running_off_the_picture_is_not_closed_along_the_edge():
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True  # the top-left corner
    expected = mask.copy()
    expected[0, 0] = False  # its neighbours are inside the mask or beyond the edge
    assert np.array_equal(drawn_pixels(mask), expected)
    assert not drawn_pixels(np.ones((6, 3), dtype=bool)).any()
    assert not drawn_pixels(np.zeros((6, 3), dtype=bool)).any()


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (33, 47)])
@pytest.mark.parametrize("density", [0.2, 0.5, 0.8])
def test_random_masks_are_outlined_by_the_four_neighbour_rule(shape, density):
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random(shape) < density
        assert np.array_equal(drawn_pixels(mask), four_neighbour_border(mask))


def test_outline_leaves_other_pixels_and_the_input_untouched():
    picture = np.full((6, 6, 3), 7, dtype=np.uint8)
    mask = np.zeros((6, 6), dtype=bool)
    mask[2:5, 1:4] = True
    drawn = outline(picture, mask)
    assert (picture == 7).all()
    assert (drawn[~four_neighbour_border(mask)] == 7).all()
    assert (drawn[four_neighbour_border(mask)] == 255).all()
