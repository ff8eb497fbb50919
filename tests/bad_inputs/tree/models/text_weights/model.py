import paddle


class Net(paddle.nn.Layer):
    def __init__(self, classes=4):
        super().__init__()
        self.linear = paddle.nn.Linear(4, classes)

    def forward(self, x):
        return self.linear(paddle.flatten(x, 1))


def get_model():
    return Net()
