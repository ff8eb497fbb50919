"""The CPU reference of `attacks.augment`'s augmentations, with scipy's `ndimage` over numpy
batches: what the worker ran before its augmentations moved onto the device, kept as the
independent reference the device ops are tested against, and the fake runtime's augmentation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from privaudit.services.attack_worker.attacks.augment import Augment, Mirror, Rotation, Translation, spatial_axes


def augmented(augment: Augment | None, images: np.ndarray) -> np.ndarray:
    """`images` (batch, *sample_shape) passed through `augment` (None: as they are)."""
    if augment is None:
        return images
    height, width = (axis + 1 for axis in spatial_axes(images.shape[1:]))
    if isinstance(augment, Rotation):
        return ndimage.rotate(images, augment.degrees, axes=(height, width), reshape=False, order=1,
                              mode="grid-constant", cval=0.0)
    if isinstance(augment, Translation):
        shift = [0.0] * images.ndim
        shift[height], shift[width] = augment.dy, augment.dx
        return ndimage.shift(images, shift, order=0, mode="constant", cval=0.0)
    assert isinstance(augment, Mirror)
    return np.flip(images, axis=width)
