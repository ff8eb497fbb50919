"""Rotations, translations and mirror images act on the spatial axes of HW, CHW and HWC images
as documented, on the worker's device (the device ops against scipy: test_device_augment.py)."""

import numpy as np
import paddle
import pytest
from scipy import ndimage
from sklearn.datasets import load_digits

from privaudit.services.attack_worker import device_augment
from privaudit.services.attack_worker.attacks.augment import (
    Augment,
    LayoutError,
    Mirror,
    Rotation,
    Translation,
    rotations,
    spatial_axes,
    translations,
)

SIZE = 5  # odd, so the centre of rotation is a pixel


def on_device(augment: Augment, batch: np.ndarray) -> np.ndarray:
    """`batch` passed through `augment` by the runtime's device ops."""
    return device_augment.stacked(paddle.to_tensor(batch), [augment]).numpy()


def one_pixel(row: int, col: int) -> np.ndarray:
    image = np.zeros((SIZE, SIZE), np.float32)
    image[row, col] = 1.0
    return image


def with_channels(layout: str, planes: list[np.ndarray]) -> np.ndarray:
    """A batch of one sample holding `planes` as its channels in `layout`."""
    if layout == "HW":
        (plane,) = planes
        return plane[None]
    stacked = np.stack(planes, axis=0 if layout == "CHW" else -1)
    return stacked[None]


def channel_planes(layout: str, batch: np.ndarray) -> list[np.ndarray]:
    sample = batch[0]
    if layout == "HW":
        return [sample]
    return list(sample) if layout == "CHW" else [sample[..., c] for c in range(sample.shape[-1])]


@pytest.mark.parametrize(
    ("shape", "axes"),
    [((8, 8), (0, 1)), ((1, 8, 8), (1, 2)), ((3, 32, 32), (1, 2)), ((4, 6, 7), (1, 2)),
     ((32, 32, 3), (0, 1)), ((8, 8, 1), (0, 1)), ((3, 8, 3), (1, 2))],
)
def test_spatial_axes_by_layout(shape, axes):
    assert spatial_axes(shape) == axes


@pytest.mark.parametrize("shape", [(64,), (5, 8, 8), (8, 8, 5), (2, 3, 8, 8)])
def test_shapes_that_are_not_images_are_refused_with_the_supported_layouts(shape):
    with pytest.raises(LayoutError, match=r"HW, CHW or HWC"):
        spatial_axes(shape)


@pytest.mark.parametrize("layout", ["HW", "CHW", "HWC"])
def test_rotation_by_90_degrees_moves_pixels_within_each_channel(layout):
    # Channel c has one lit pixel; a counter-clockwise quarter turn about the centre (2, 2)
    # sends (row, col) to (SIZE-1-col, row), and never mixes channels.
    lit = [(0, 2), (1, 3), (4, 1)][: 1 if layout == "HW" else 3]
    batch = with_channels(layout, [one_pixel(r, c) * (k + 1) for k, (r, c) in enumerate(lit)])

    rotated = on_device(Rotation(90), batch)

    assert rotated.shape == batch.shape
    for k, ((row, col), plane) in enumerate(zip(lit, channel_planes(layout, rotated), strict=True)):
        np.testing.assert_allclose(plane, one_pixel(SIZE - 1 - col, row) * (k + 1), atol=1e-6)


def test_rotation_rotates_every_image_of_a_batch():
    batch = np.stack([one_pixel(0, 2), one_pixel(2, 4)])[:, None]  # (2, 1, 5, 5) CHW
    rotated = on_device(Rotation(-90), batch)
    np.testing.assert_allclose(rotated[0, 0], one_pixel(2, 4), atol=1e-6)
    np.testing.assert_allclose(rotated[1, 0], one_pixel(4, 2), atol=1e-6)


def test_two_degree_rotation_changes_an_8x8_digit():
    digit = load_digits().images[0].astype(np.float32)[None, None]  # (1, 1, 8, 8)
    # Why bilinear interpolation is required: nearest-neighbour sampling leaves it untouched.
    nearest = ndimage.rotate(digit, 2, axes=(2, 3), reshape=False, order=0, mode="nearest")
    assert np.array_equal(nearest, digit)

    rotated = on_device(Rotation(2), digit)

    assert np.abs(rotated - digit).max() > 0.5  # pixel values run from 0 to 16
    assert 0 < np.abs(rotated - digit).sum() < np.abs(digit).sum()


@pytest.mark.parametrize("layout", ["HW", "CHW", "HWC"])
def test_translation_moves_a_pixel_by_dx_right_and_dy_down(layout):
    planes = [one_pixel(2, 3)] if layout == "HW" else [k * one_pixel(2, 3) for k in (1, 2, 3)]
    batch = with_channels(layout, planes)

    moved = on_device(Translation(dx=1, dy=-2), batch)

    for k, plane in enumerate(channel_planes(layout, moved)):
        np.testing.assert_array_equal(plane, one_pixel(0, 4) * (k + 1))


def test_translation_fills_with_zeros():
    image = np.ones((1, 1, 4, 4), np.float32)
    moved = on_device(Translation(dx=-1, dy=2), image)[0, 0]
    np.testing.assert_array_equal(moved[:2], 0)  # rows shifted in from above
    np.testing.assert_array_equal(moved[:, 3], 0)  # the column shifted in from the right
    np.testing.assert_array_equal(moved[2:, :3], 1)


@pytest.mark.parametrize("layout", ["HW", "CHW", "HWC"])
def test_mirror_reverses_the_width_axis_within_each_channel(layout):
    planes = [one_pixel(1, 0)] if layout == "HW" else [k * one_pixel(1, k) for k in (1, 2, 3)]

    mirrored = on_device(Mirror(), with_channels(layout, planes))

    for k, plane in enumerate(channel_planes(layout, mirrored)):
        np.testing.assert_array_equal(plane, np.fliplr(planes[k]))


def test_shifts_and_rotations_of_a_batch_are_stacked_augmentation_by_augmentation():
    batch = np.stack([one_pixel(0, 2), one_pixel(2, 4)])[:, None]  # (2, 1, 5, 5) CHW
    augments = [Translation(1, 0), Rotation(90), Mirror()]

    copies = device_augment.stacked(paddle.to_tensor(batch), augments).numpy()

    assert copies.shape == (6, 1, SIZE, SIZE)
    for j, augment in enumerate(augments):
        np.testing.assert_array_equal(copies[2 * j:2 * j + 2], on_device(augment, batch))
    np.testing.assert_array_equal(copies[1, 0], np.zeros((SIZE, SIZE)))  # moved off the right edge


@pytest.mark.parametrize("augment", [Rotation(3), Translation(1, 0), Mirror()])
def test_samples_that_are_not_images_are_refused_by_the_device_ops(augment):
    with pytest.raises(LayoutError, match=r"HW, CHW or HWC"):
        on_device(augment, np.zeros((2, 5, 8, 8), np.float32))


@pytest.mark.parametrize("d", [0, 1, 2, 3, 7])
def test_translations_are_the_identity_and_every_shift_by_exactly_d(d):
    # Choquette-Choo et al.: 4d + 1 queries, the unshifted image and the ring |dx| + |dy| = d.
    expected = {(0, 0)} | {(dx, dy) for dx in range(-d, d + 1) for dy in range(-d, d + 1) if abs(dx) + abs(dy) == d}
    shifts = [(t.dx, t.dy) for t in translations(d)]
    assert len(shifts) == len(set(shifts)) == 4 * d + 1
    assert set(shifts) == expected
    assert shifts[0] == (0, 0)


def test_translations_within_one_pixel():
    assert {(t.dx, t.dy) for t in translations(1)} == {(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)}


def test_translations_by_two_leave_out_the_one_pixel_shifts():
    assert {(t.dx, t.dy) for t in translations(2)} == {
        (0, 0), (2, 0), (-2, 0), (0, 2), (0, -2), (1, 1), (1, -1), (-1, 1), (-1, -1)}


def test_rotations_cover_each_whole_degree():
    assert [t.degrees for t in rotations(3)] == [-3, -2, -1, 0, 1, 2, 3]


def test_rotations_by_one_are_three_queries_as_the_paper_counts():
    # 2r + 1; the paper's reference code special-cases r = 1 to the identity alone.
    assert [t.degrees for t in rotations(1)] == [-1, 0, 1]


@pytest.mark.parametrize("augments", [rotations(0), translations(0)])
def test_zero_range_is_the_single_unaugmented_query(augments):
    batch = np.random.default_rng(1).random((3, 1, 8, 8)).astype(np.float32)
    (identity,) = augments
    out = on_device(identity, batch)
    assert out.dtype == batch.dtype
    np.testing.assert_array_equal(out, batch)
