"""The augmentations of `attacks.augment` as Paddle ops on a batch already on the job's device.

Only the runtime imports this. Each op works on (batch, channels, height, width); `stacked`
brings HW, CHW and HWC batches to that layout and back, so it follows augment's conventions for
all three.

Rotation matches scipy's `ndimage.rotate(reshape=False, order=1, mode="grid-constant")`
(tests/test_device_augment.py): the output pixel (row, col) samples the input bilinearly at
R (p - c) + c, with c = ((height - 1) / 2, (width - 1) / 2) the centre between pixel centres, and
samples outside the image count as zero (grid_sample's `zeros` padding is scipy's
`grid-constant`). `affine_grid` and `grid_sample` both run with align_corners=False, where
normalised coordinate -1 is the outer edge of the first pixel: pixel j sits at (2j + 1) / n - 1,
so a pixel offset from the centre is scaled by 2 / n on each axis, and theta carries the aspect
ratio between the two axes. (align_corners=True with a (n - 1) / 2 scale gives the same numbers;
it is not used because it divides by zero on a one-pixel axis.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import paddle
import paddle.nn.functional as F

from privaudit.services.attack_worker.attacks.augment import Augment, Mirror, Rotation, Translation, spatial_axes


def stacked(images: paddle.Tensor, augments: Sequence[Augment]) -> paddle.Tensor:
    """Every augmentation of `images` (batch, *sample_shape), one after the other:
    (len(augments) * batch, *sample_shape), copy j of record i at row j * batch + i. Raises
    augment.LayoutError for samples that are not HW, CHW or HWC images."""
    sample_shape = tuple(images.shape[1:])
    height, _ = spatial_axes(sample_shape)
    channels_last = len(sample_shape) == 3 and height == 0
    if len(sample_shape) == 2:
        planes = images.unsqueeze(1)
    else:
        planes = images.transpose([0, 3, 1, 2]) if channels_last else images
    copies = paddle.concat(_copies(planes, augments))
    if len(sample_shape) == 2:
        return copies.squeeze(1)
    return copies.transpose([0, 2, 3, 1]) if channels_last else copies


def _copies(planes: paddle.Tensor, augments: Sequence[Augment]) -> list[paddle.Tensor]:
    """Each augmentation of `planes` (N, C, H, W), in order; every rotation in one sampling pass."""
    angles = sorted({a.degrees for a in augments if isinstance(a, Rotation) and a.degrees % 360})
    rotated = dict(zip(angles, _rotated(planes, angles), strict=True)) if angles else {}
    copies = []
    for augment in augments:
        if isinstance(augment, Rotation):
            copies.append(rotated.get(augment.degrees, planes))  # a whole turn is exactly the identity
        elif isinstance(augment, Translation):
            copies.append(_shifted(planes, augment.dx, augment.dy))
        elif isinstance(augment, Mirror):
            copies.append(planes.flip(axis=[3]))
        else:
            raise TypeError(f"not an augmentation: {augment!r}")
    return copies


def _rotated(planes: paddle.Tensor, angles: Sequence[int]) -> list[paddle.Tensor]:
    """`planes` (N, C, H, W) rotated counter-clockwise by each of `angles` degrees about their centre."""
    count, height, width = planes.shape[0], planes.shape[2], planes.shape[3]
    radians = [math.radians(degrees) for degrees in angles]
    # Output (x, y) in normalised coordinates -> the input point it samples; x runs along the
    # width, y down the height, each scaled by 2 / its length (see the module's docstring).
    theta = paddle.to_tensor([[[math.cos(a), -math.sin(a) * height / width, 0.0],
                               [math.sin(a) * width / height, math.cos(a), 0.0]] for a in radians],
                             dtype=planes.dtype, place=planes.place)
    theta = theta.repeat_interleave(count, axis=0)  # angle-major, as the copies are stacked
    grid = F.affine_grid(theta, [len(angles) * count, *planes.shape[1:]], align_corners=False)
    source = planes.tile([len(angles), 1, 1, 1])
    rotated = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return list(rotated.split(len(angles)))


def _shifted(planes: paddle.Tensor, dx: int, dy: int) -> paddle.Tensor:
    """`planes` (N, C, H, W) with their content moved dx pixels right and dy down, zero-filled."""
    if dx == dy == 0:
        return planes
    height, width = planes.shape[2], planes.shape[3]
    padded = F.pad(planes, [max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)])  # left, right, top, bottom
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[:, :, top:top + height, left:left + width]
