"""The example's target model: a one-hidden-layer perceptron for 1x8x8 digit images.

Its 9,610 parameters are plenty to memorise the 400 images it is trained on, the
mislabelled ones included, which is what makes it leak membership.
`example/train_target.py` writes its weights, digits_mlp.pdparams, next to this file.
"""

import paddle

NUM_CLASSES = 10
HIDDEN_UNITS = 128


def get_model() -> paddle.nn.Layer:
    return paddle.nn.Sequential(
        paddle.nn.Flatten(),
        paddle.nn.Linear(8 * 8, HIDDEN_UNITS),
        paddle.nn.ReLU(),
        paddle.nn.Linear(HIDDEN_UNITS, NUM_CLASSES),
    )
