"""A tiny convolutional network for 1x8x8 digit images.

The example uses it as ML-LEAK's shadow model: an architecture different from
the target's, since an attacker rarely knows the target's. It has no weights
file; the attack trains it from scratch.
"""

import paddle

NUM_CLASSES = 10
CHANNELS = 16


def get_model() -> paddle.nn.Layer:
    return paddle.nn.Sequential(
        paddle.nn.Conv2D(1, CHANNELS, kernel_size=3, padding=1),  # 16 x 8 x 8
        paddle.nn.ReLU(),
        paddle.nn.MaxPool2D(kernel_size=2),  # 16 x 4 x 4
        paddle.nn.Flatten(),
        paddle.nn.Linear(CHANNELS * 4 * 4, NUM_CLASSES),
    )
