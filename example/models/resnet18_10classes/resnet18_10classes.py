"""ResNet-18 (Paddle's `paddle.vision.models.resnet18`) for the 10 CIFAR-10 classes.

The target model of the seed's CIFAR task, and LABEL-ONLY's shadow architecture there.
No pretrained weights: example/train_cifar_target.py trains it on CIFAR-10's training set
and writes resnet18_10classes.pdparams next to this file.
"""

import paddle
from paddle.vision.models import resnet18

NUM_CLASSES = 10


def get_model() -> paddle.nn.Layer:
    return resnet18(num_classes=NUM_CLASSES)
