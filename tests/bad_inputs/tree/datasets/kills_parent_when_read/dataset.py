import os
import signal

import numpy as np
import paddle


class Records(paddle.io.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 3:
            os.kill(os.getppid(), signal.SIGKILL)
        return np.eye(4, dtype=np.float32)[i % 4].reshape(2, 2), i % 4


def get_dataset():
    return Records()
