import numpy as np


def get_dataset(:
    return [(np.zeros(4, np.float32), 0)]
