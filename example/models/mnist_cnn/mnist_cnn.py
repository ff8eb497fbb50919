"""A small convolutional network for 1x28x28 MNIST digits: the MNIST example's target model.

Two 3x3 convolutions (8 and 16 channels), each followed by ReLU and 2x2 max pooling, then
one linear layer: 9,098 parameters, small enough that LIRA's and RMIA's shadow models train
in seconds on a CPU. Its weights come from example/train_mnist_target.py.
"""

import paddle

NUM_CLASSES = 10


def get_model() -> paddle.nn.Layer:
    return paddle.nn.Sequential(
        paddle.nn.Conv2D(1, 8, kernel_size=3, padding=1),  # 8 x 28 x 28
        paddle.nn.ReLU(),
        paddle.nn.MaxPool2D(kernel_size=2),  # 8 x 14 x 14
        paddle.nn.Conv2D(8, 16, kernel_size=3, padding=1),  # 16 x 14 x 14
        paddle.nn.ReLU(),
        paddle.nn.MaxPool2D(kernel_size=2),  # 16 x 7 x 7
        paddle.nn.Flatten(),
        paddle.nn.Linear(16 * 7 * 7, NUM_CLASSES),
    )
