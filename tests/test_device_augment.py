"""The device path of augmented queries gives the CPU path's numbers.

The CPU path is what the worker ran before: scipy's ndimage over numpy batches
(tests/augment_reference.py). Compared here image by image, on random images of every layout
and of odd and even sizes, and score by score: LABEL-ONLY and LIRA with `augment` on a small
trained Paddle model, run once with the device ops and once with the reference in their place.
"""

from __future__ import annotations

import numpy as np
import paddle
import pytest
from augment_reference import augmented
from sklearn.datasets import load_digits
from worker_fixtures import write_dataset, write_model

from privaudit.services.attack_worker import attacks, device_augment, paddle_runtime
from privaudit.services.attack_worker.attacks import label_only
from privaudit.services.attack_worker.attacks.augment import (
    Augment,
    Mirror,
    Rotation,
    Translation,
    rotations,
    translations,
)
from privaudit.services.attack_worker.paddle_runtime import PaddleRuntime
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.task_spec import LabelOnlyArgs, LiraArgs

# Pixel values of the random images run from 0 to 1; float32 grid coordinates move a bilinear
# sample by about 1e-6 of a pixel.
TOLERANCE = 1e-5
LAYOUTS = {"HW": lambda h, w: (h, w), "CHW": lambda h, w: (3, h, w), "HWC": lambda h, w: (h, w, 3),
           "1HW": lambda h, w: (1, h, w), "HW1": lambda h, w: (h, w, 1)}
SIZES = [(5, 5), (8, 8), (6, 9), (7, 4), (32, 32), (1, 6)]
AUGMENTS: list[Augment] = [
    *rotations(6), Rotation(45), Rotation(90), Rotation(-135), Rotation(180), Rotation(360),
    *translations(2), Translation(3, -1), Translation(-9, 0), Translation(0, 40), Mirror(),
]


def device(images: np.ndarray, augments: list[Augment]) -> np.ndarray:
    return device_augment.stacked(paddle.to_tensor(images), augments).numpy()


def reference_stacked(images: paddle.Tensor, augments: list[Augment]) -> paddle.Tensor:
    """The CPU path in the device path's place: each augmentation by scipy, stacked alike."""
    samples = images.numpy()
    return paddle.to_tensor(np.concatenate([augmented(augment, samples) for augment in augments]))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("height", "width"), SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_every_augmentation_matches_scipy_on_random_images(layout, height, width):
    rng = np.random.default_rng(height * 100 + width)
    images = rng.random((4, *LAYOUTS[layout](height, width))).astype(np.float32)

    copies = device(images, AUGMENTS)

    assert copies.shape == (len(AUGMENTS) * 4, *images.shape[1:]) and copies.dtype == np.float32
    for j, augment in enumerate(AUGMENTS):
        np.testing.assert_allclose(copies[4 * j:4 * j + 4], augmented(augment, images), rtol=0, atol=TOLERANCE,
                                   err_msg=f"{augment} of {layout} {height}x{width}")


def test_rotation_matches_scipy_at_the_borders_where_it_blends_with_zeros():
    # An all-ones image: inside, bilinear weights sum to 1; at the border, the part of a sample
    # that falls outside is zero. Where the conventions differ (the centre, align_corners), the
    # border band is where it shows.
    images = np.ones((1, 1, 7, 10), np.float32)
    for degrees in (1, 7, 30, -60):
        got, want = device(images, [Rotation(degrees)]), augmented(Rotation(degrees), images)
        assert ((want > 0) & (want < 1)).sum() > 10, "the border band is there to compare"
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


def test_identity_augmentations_return_the_images_exactly():
    images = np.random.default_rng(3).random((2, 3, 6, 7)).astype(np.float32)
    for identity in (Rotation(0), Rotation(360), Translation(0, 0)):
        np.testing.assert_array_equal(device(images, [identity]), images)


# ---------------------------------------------------------------- scores on a small Paddle model

MODEL_CODE = '''
import paddle


class Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(1, 4, 3, padding=1)
        self.linear = paddle.nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.linear(paddle.flatten(paddle.nn.functional.relu(self.conv(x)), start_axis=1))


def get_model():
    return Net()
'''


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory) -> str:
    """A storage root with digits (1x8x8, scaled to 0..1) split four ways, 60 records each, and
    a model trained on the first part (it overfits: members are more often right when shifted)."""
    root = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    samples = (digits.images[:240] / 16.0).astype(np.float32)[:, None]
    labels = digits.target[:240].astype(np.int64)
    for part, name in enumerate(["members", "non_members", "shadow_members", "shadow_non_members"]):
        rows = slice(60 * part, 60 * (part + 1))
        write_dataset(root / "datasets" / name, samples[rows], labels[rows])
    write_model(root / "models" / "shadow", None, MODEL_CODE)
    rt = PaddleRuntime(WorkerSettings(str(root)), 0, lambda *_: None)
    net = rt.load_model("target_model", "models/shadow", trained=False)
    rt.train(net, rt.load_dataset("members", "datasets/members"), epochs=150, lr=0.01, batch_size=60)
    write_model(root / "models" / "target", {k: v.numpy() for k, v in net.layer.state_dict().items()}, MODEL_CODE)
    return str(root)


def both_paths(digits_root, monkeypatch, run) -> tuple:
    """`run(runtime)` with the device ops, then with the CPU reference in their place."""
    on_device = run(PaddleRuntime(WorkerSettings(digits_root), 11, lambda *_: None))
    with monkeypatch.context() as patch:
        patch.setattr(paddle_runtime.device_augment, "stacked", reference_stacked)
        on_cpu = run(PaddleRuntime(WorkerSettings(digits_root), 11, lambda *_: None))
    return on_device, on_cpu


@pytest.mark.parametrize(("attack_type", "size"), [("r", 6), ("d", 2)])
def test_label_only_scores_are_the_cpu_paths(digits_root, monkeypatch, attack_type, size):
    args = LabelOnlyArgs(target_model="models/target", shadow_model="models/shadow",
                         target_datasets=["datasets/members", "datasets/non_members"],
                         shadow_datasets=["datasets/shadow_members", "datasets/shadow_non_members"],
                         attack_type=attack_type, r=size, d=size, shadow_epoch=30, shadow_lr=0.01,
                         classifier_epoch=100, batch_size=32)

    def features(rt: PaddleRuntime) -> np.ndarray:
        model = rt.load_model("target_model", args.target_model)
        return rt.predict_augmented(model, rt.load_dataset("n", "datasets/non_members"),
                                    label_only.augments_for(args), args.batch_size)

    device_features, cpu_features = both_paths(digits_root, monkeypatch, features)
    np.testing.assert_array_equal(device_features, cpu_features)
    assert 0 < device_features.mean() < 1, "the augmentations change some predictions"

    on_device, on_cpu = both_paths(digits_root, monkeypatch, lambda rt: label_only.run(args, rt))
    np.testing.assert_allclose(on_device.members, on_cpu.members, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(on_device.non_members, on_cpu.non_members, rtol=1e-6, atol=1e-9)


def test_lira_scores_with_the_mirror_view_are_the_cpu_paths(digits_root, monkeypatch):
    args = LiraArgs(target_model="models/target", target_datasets=["datasets/members", "datasets/non_members"],
                    num_shadow=2, epochs=3, lr=0.01, batch_size=32, augment=True)

    on_device, on_cpu = both_paths(digits_root, monkeypatch, lambda rt: attacks.runner_for(args.name)(args, rt))

    np.testing.assert_allclose(on_device.members, on_cpu.members, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(on_device.non_members, on_cpu.non_members, rtol=1e-4, atol=1e-6)
