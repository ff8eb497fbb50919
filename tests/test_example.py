"""The shipped example: its data splits, dataset and model folders, target training and task file."""

import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import paddle
import pytest
from sklearn.datasets import load_digits

from privaudit.services.common.task_spec import parse_yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example"
SPLITS = ("target_members", "target_non_members", "shadow_members", "shadow_non_members")
MODELS = ("digits_mlp", "digits_cnn", "digits_constant")


def _load_by_path(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"test_example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_target() -> ModuleType:
    return _load_by_path(EXAMPLE / "train_target.py")


@pytest.fixture(scope="module")
def digits(train_target: ModuleType) -> ModuleType:
    return train_target.load_module(EXAMPLE / "digits.py")


def _only_python_file(folder: Path) -> Path:
    sources = list(folder.glob("*.py"))
    assert [s.name for s in sources] == [f"{folder.name}.py"], f"{folder} must hold exactly one .py named after it"
    return sources[0]


def _dataset(train_target: ModuleType, split: str) -> paddle.io.Dataset:
    folder = EXAMPLE / "datasets" / f"digits_{split}"
    return train_target.load_module(_only_python_file(folder)).get_dataset()


def _as_arrays(dataset: paddle.io.Dataset) -> tuple[np.ndarray, np.ndarray]:
    samples = [dataset[i] for i in range(len(dataset))]
    return np.stack([image for image, _ in samples]), np.array([label for _, label in samples])


def test_splits_are_disjoint_stratified_and_stable(digits: ModuleType) -> None:
    splits = digits.split_indices()
    labels = load_digits().target
    assert tuple(splits) == SPLITS
    every = np.concatenate(list(splits.values()))
    assert len(np.unique(every)) == len(every) == 4 * 400
    assert every.min() >= 0 and every.max() < len(labels)
    for name, index in splits.items():
        assert np.bincount(labels[index], minlength=10).tolist() == [40] * 10, name
    digits.split_indices.cache_clear()
    again = digits.split_indices()
    assert all(np.array_equal(splits[name], again[name]) for name in SPLITS)


def test_a_fifth_of_each_digit_is_mislabelled_and_every_label_stays_balanced(digits: ModuleType) -> None:
    true_labels = load_digits().target
    wrong_sets, labels = [], {split: digits.noisy_labels(split) for split in SPLITS}
    for split in SPLITS:
        true, given = true_labels[digits.split_indices()[split]], labels[split]
        wrong = given != true
        assert [int(wrong[true == digit].sum()) for digit in range(10)] == [8] * 10, split
        assert np.bincount(given, minlength=10).tolist() == [40] * 10, split
        assert given.dtype == np.int64 and given.min() >= 0 and given.max() <= 9
        wrong_sets.append(frozenset(np.flatnonzero(wrong)))
    assert len(set(wrong_sets)) == len(SPLITS), "each split draws its own mislabelled images"
    digits.noisy_labels.cache_clear()
    assert all(np.array_equal(labels[split], digits.noisy_labels(split)) for split in SPLITS)


@pytest.mark.parametrize("split", SPLITS)
def test_dataset_folder_yields_its_split(train_target: ModuleType, digits: ModuleType, split: str) -> None:
    dataset = _dataset(train_target, split)
    assert isinstance(dataset, paddle.io.Dataset)
    image, label = dataset[0]
    assert image.shape == (1, 8, 8) and image.dtype == np.float32
    assert isinstance(label, int | np.integer)

    images, labels = _as_arrays(dataset)
    index = digits.split_indices()[split]
    expected = load_digits()
    np.testing.assert_array_equal(images[:, 0] * 16, expected.images[index])
    np.testing.assert_array_equal(labels, digits.noisy_labels(split))
    assert np.mean(labels == expected.target[index]) == 0.8
    assert images.min() == 0.0 and images.max() == 1.0


def test_two_loads_give_identical_data(train_target: ModuleType) -> None:
    first = _as_arrays(_dataset(train_target, "target_members"))
    second = _as_arrays(_dataset(train_target, "target_members"))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_datasets_batch_through_a_data_loader(train_target: ModuleType) -> None:
    images, labels = next(iter(paddle.io.DataLoader(_dataset(train_target, "shadow_members"), batch_size=64)))
    assert images.shape == [64, 1, 8, 8] and images.dtype == paddle.float32
    assert labels.shape == [64] and labels.dtype == paddle.int64


@pytest.mark.parametrize("name", MODELS)
def test_model_folder_gives_ten_logits_per_image(train_target: ModuleType, name: str) -> None:
    model = train_target.load_module(_only_python_file(EXAMPLE / "models" / name)).get_model()
    assert isinstance(model, paddle.nn.Layer)
    model.eval()
    assert model(paddle.rand([5, 1, 8, 8])).shape == [5, 10]


def test_constant_model_ignores_its_input_and_has_no_weights(train_target: ModuleType) -> None:
    model = train_target.load_module(EXAMPLE / "models/digits_constant/digits_constant.py").get_model()
    assert model.parameters() == [] and len(model.state_dict()) == 0
    zeros, noise = model(paddle.zeros([3, 1, 8, 8])).numpy(), model(paddle.rand([3, 1, 8, 8])).numpy()
    np.testing.assert_array_equal(zeros, noise)
    assert (zeros == zeros[0]).all() and len(np.unique(zeros[0])) == 10  # one unambiguous top class


def test_target_training_overfits_and_is_byte_identical(train_target: ModuleType, tmp_path: Path) -> None:
    first, second = tmp_path / "first.pdparams", tmp_path / "second.pdparams"
    accuracy = train_target.train_target(first)
    assert accuracy == train_target.train_target(second)
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    # It memorises every member, wrong labels included, and cannot guess unseen wrong labels.
    assert accuracy.train == 1.0
    assert accuracy.test <= 0.7, accuracy

    # The written weights fit the model folder's architecture and reproduce the reported accuracy.
    model = train_target.load_module(train_target.MODEL_SOURCE).get_model()
    missing, unexpected = model.set_state_dict(paddle.load(str(first)))
    assert missing == [] and unexpected == []
    model.eval()
    images, labels = _as_arrays(_dataset(train_target, "target_non_members"))
    predicted = model(paddle.to_tensor(images)).argmax(axis=1).numpy()
    assert float(np.mean(predicted == labels)) == accuracy.test


def test_task_file_is_valid_and_names_existing_folders() -> None:
    task = parse_yaml((EXAMPLE / "tasks" / "mem_inf.yaml").read_text())
    assert [attack.name for attack in task.attacks] == ["BASELINE", "ML-LEAK", "LABEL-ONLY"]
    for attack in task.attacks:
        args = attack.model_dump(exclude_none=True)
        folders = [path for key, path in args.items() if key.endswith("_model")]
        folders += [path for key, pair in args.items() if key.endswith("_datasets") for path in pair.values()]
        assert len(folders) == (3 if attack.name == "BASELINE" else 6)
        for path in folders:
            assert (ROOT / path).is_dir(), f"{attack.name}: {path} is not a folder"
    ml_leak, label_only = task.attacks[1], task.attacks[2]
    assert ml_leak.shadow_model.endswith("digits_cnn") and label_only.shadow_model.endswith("digits_mlp")


def test_shadow_models_are_trained_as_the_target_was(train_target: ModuleType) -> None:
    for attack in parse_yaml((EXAMPLE / "tasks" / "mem_inf.yaml").read_text()).attacks[1:]:
        assert (attack.shadow_epoch, attack.shadow_lr, attack.batch_size) == (
            train_target.EPOCHS, train_target.LEARNING_RATE, train_target.BATCH_SIZE), attack.name
