"""ResNet-34 (Paddle's `paddle.vision.models.resnet34`) for the 100 CIFAR-100 classes.

ML-LEAK's shadow architecture in the seed's CIFAR task: the attack trains it from scratch
on CIFAR-100, so it has no weights file.
"""

import paddle
from paddle.vision.models import resnet34

NUM_CLASSES = 100


def get_model() -> paddle.nn.Layer:
    return resnet34(num_classes=NUM_CLASSES)
