"""A control model that ignores its input: every image gets the same ten logits.

Its outputs carry no information about any sample, so no membership inference
attack can do better than chance against it (AUC 0.5). It has no trainable
parameters and therefore no .pdparams file; its logits are a fixed, non-persistable
buffer. Use it as a target model only: with nothing to train, it cannot be a shadow.
"""

import paddle

NUM_CLASSES = 10


class ConstantLogits(paddle.nn.Layer):
    """Returns the same logits, decreasing from class 0 to class 9, for every input."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("logits", paddle.linspace(1.0, 0.0, NUM_CLASSES), persistable=False)

    def forward(self, images: paddle.Tensor) -> paddle.Tensor:
        return self.logits.expand([images.shape[0], NUM_CLASSES])


def get_model() -> paddle.nn.Layer:
    return ConstantLogits()
