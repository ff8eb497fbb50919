"""Image augmentations of augmented queries, as data: which rotation, shift or mirror image.

The runtime applies them to a batch (batch, *sample_shape), giving a batch of the same shape, on
the two spatial axes of the samples, whatever their layout:

- HW:  2-D samples (height, width);
- CHW: 3-D samples whose first axis is a channel axis of 1, 3 or 4;
- HWC: 3-D samples whose last axis is a channel axis of 1, 3 or 4 (and whose first is not).

Conventions: a positive angle rotates counter-clockwise as the image is displayed (row 0 at the
top), about the image centre, with bilinear interpolation; a translation (dx, dy) moves content
dx pixels right and dy pixels down; a mirror image reverses the width axis. Pixels that come
from outside the image are zero, and a rotated pixel near the border blends with them.
"""

from __future__ import annotations

from dataclasses import dataclass

CHANNEL_COUNTS = (1, 3, 4)  # what a small channel axis may hold


class LayoutError(ValueError):
    """A sample shape that is not an HW, CHW or HWC image."""


def spatial_axes(sample_shape: tuple[int, ...]) -> tuple[int, int]:
    """The (height, width) axes of a sample of this shape."""
    if len(sample_shape) == 2:
        return 0, 1
    if len(sample_shape) == 3 and sample_shape[0] in CHANNEL_COUNTS:
        return 1, 2
    if len(sample_shape) == 3 and sample_shape[-1] in CHANNEL_COUNTS:
        return 0, 1
    raise LayoutError(
        f"samples of shape {tuple(sample_shape)} are not images: rotations and translations need "
        "HW, CHW or HWC samples with 1, 3 or 4 channels; "
        "have get_dataset() return samples in one of those layouts"
    )


@dataclass(frozen=True)
class Rotation:
    """Rotation by whole degrees with bilinear interpolation (nearest-neighbour would leave
    small images unchanged by small angles), the image padded with zeros."""

    degrees: int


@dataclass(frozen=True)
class Translation:
    """Shift by whole pixels: dx to the right, dy down."""

    dx: int
    dy: int


@dataclass(frozen=True)
class Mirror:
    """The image mirrored left-right: column j of the result is column width - 1 - j."""


# One augmentation of a batch of images.
Augment = Rotation | Translation | Mirror


def rotations(r: int) -> list[Augment]:
    """The rotations of Choquette-Choo et al.'s augmentation attack for `r`: one per whole degree
    in [-r, r], the identity included (2r + 1 queries); r=0 gives only the identity. (Their code
    special-cases r=1 to the identity alone; the paper's 2r + 1 is followed here.)"""
    return [Rotation(degrees) for degrees in range(-r, r + 1)]


def translations(d: int) -> list[Augment]:
    """The translations of Choquette-Choo et al.'s augmentation attack for `d`: the identity and
    every shift (dx, dy) by exactly d pixels in total, |dx| + |dy| = d: 4d + 1 queries, the count
    the paper gives and its reference code builds (it walks the ring |dx| + |dy| = d and adds the
    unshifted image). Not the 2d^2 + 2d + 1 shifts with |dx| + |dy| <= d: the two sets agree only
    for d <= 1. d=0 gives only the identity."""
    ring = [(dx, dy) for dx in range(-d, d + 1) for dy in (d - abs(dx), abs(dx) - d) if d > 0]
    shifts = [(0, 0), *dict.fromkeys(ring)]  # dict.fromkeys drops the repeated dy = 0 at dx = +-d
    return [Translation(dx, dy) for dx, dy in shifts]
