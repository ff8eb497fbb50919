"""The second target's architecture: two 3x3 convolutions and a hidden layer, for 1x8x8 digits."""

import paddle


def get_model() -> paddle.nn.Layer:
    return paddle.nn.Sequential(
        paddle.nn.Conv2D(1, 32, kernel_size=3, padding=1),
        paddle.nn.ReLU(),
        paddle.nn.Conv2D(32, 32, kernel_size=3, padding=1),
        paddle.nn.ReLU(),
        paddle.nn.MaxPool2D(kernel_size=2),  # 32 x 4 x 4
        paddle.nn.Flatten(),
        paddle.nn.Linear(32 * 4 * 4, 64),
        paddle.nn.ReLU(),
        paddle.nn.Linear(64, 10),
    )
