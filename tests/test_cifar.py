"""The seed's CIFAR example: loaders of the real archive format, the ResNet folders, the task file,
the target trainer, and BASELINE through them, on tiny archives built here in that format."""

from __future__ import annotations

import importlib.util
import io
import pickle
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
import pytest

from privaudit.services.attack_worker import storage
from privaudit.services.attack_worker.job import run_job
from privaudit.services.attack_worker.settings import WorkerSettings
from privaudit.services.common.errors import TaskError
from privaudit.services.common.task_spec import parse_yaml
from privaudit.v1 import attack_worker_pb2, results_pb2, task_pb2

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "example"
PIXELS = 3 * 32 * 32
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
DATASETS = ("cifar10_train", "cifar10_test", "cifar100_train", "cifar100_test")


@dataclass(frozen=True)
class Split:
    """What a tiny archive holds for one split, in file order: rows as CIFAR stores them, labels."""

    data: np.ndarray  # uint8 (n, 3072)
    labels: np.ndarray


def rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, PIXELS), dtype=np.uint8)


def add_pickle(archive: tarfile.TarFile, name: str, content: dict[bytes, object]) -> None:
    """A member as the real archives hold them: a pickle whose keys load as bytes."""
    payload = pickle.dumps(content, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def write_cifar10(folder: Path, per_class: int = 3) -> dict[str, Split]:
    """cifar-10-python.tar.gz: `per_class` training images of each class spread over the five
    data batches, and one test image per class."""
    rng = np.random.default_rng(10)
    train = Split(rows(rng, 10 * per_class), rng.permutation(np.repeat(np.arange(10), per_class)))
    test = Split(rows(rng, 10), rng.permutation(10))
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as archive:
        for number, part in enumerate(np.array_split(np.arange(len(train.labels)), 5), start=1):
            add_pickle(archive, f"cifar-10-batches-py/data_batch_{number}", {
                b"batch_label": f"training batch {number} of 5".encode(), b"data": train.data[part],
                b"labels": train.labels[part].tolist(), b"filenames": [b"x.png"] * len(part)})
        add_pickle(archive, "cifar-10-batches-py/test_batch", {
            b"batch_label": b"testing batch 1 of 1", b"data": test.data, b"labels": test.labels.tolist(),
            b"filenames": [b"x.png"] * len(test.labels)})
        add_pickle(archive, "cifar-10-batches-py/batches.meta", {b"num_cases_per_batch": 10000})
    return {"train": train, "test": test}


def write_cifar100(folder: Path) -> dict[str, Split]:
    """cifar-100-python.tar.gz: one training image per fine class and 20 test images; the coarse
    labels differ from the fine ones, so reading the wrong key shows."""
    rng = np.random.default_rng(100)
    splits = {"train": Split(rows(rng, 100), rng.permutation(100)), "test": Split(rows(rng, 20), rng.permutation(20))}
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "cifar-100-python.tar.gz", "w:gz") as archive:
        for name, split in splits.items():
            add_pickle(archive, f"cifar-100-python/{name}", {
                b"data": split.data, b"fine_labels": split.labels.tolist(),
                b"coarse_labels": (split.labels // 5).tolist(), b"filenames": [b"x.png"] * len(split.labels)})
    return splits


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A storage root holding the example's CIFAR files and tiny archives in example/data."""
    for relative in ("cifar.py", *(f"datasets/{name}" for name in DATASETS), "models/resnet18_10classes"):
        source, copy = EXAMPLE / relative, tmp_path / "example" / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy)
    return tmp_path


@pytest.fixture
def archives(root: Path) -> dict[str, dict[str, Split]]:
    data = root / "example" / "data"
    return {"cifar10": write_cifar10(data), "cifar100": write_cifar100(data)}


def load(root: Path, name: str):
    return storage.load_dataset(root, f"./example/datasets/{name}", "test_datasets.members")


def test_cifar10_records_are_standardised_chw_images_with_their_labels(root, archives):
    train, test = load(root, "cifar10_train"), load(root, "cifar10_test")
    assert (len(train), len(test)) == (30, 10)
    mean, std = CIFAR10_STATS
    channel, height, width = np.indices((3, 32, 32))
    for dataset, split in ((train, archives["cifar10"]["train"]), (test, archives["cifar10"]["test"])):
        for index in (0, 7, len(dataset) - 1):  # records of the first and the last batch
            image, label = dataset[index]
            assert image.shape == (3, 32, 32) and image.dtype == np.float32
            assert isinstance(label, np.int64) and label == split.labels[index]
            # Each row is 1024 red values, then green, then blue, each plane row by row.
            pixels = split.data[index][channel * 1024 + height * 32 + width] / 255.0
            expected = (pixels - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
            np.testing.assert_allclose(image, expected, rtol=1e-5, atol=1e-5)
        labels = [int(dataset[i][1]) for i in range(len(dataset))]
        assert labels == split.labels.tolist()  # batches in order 1..5


def test_cifar100_records_carry_the_fine_labels(root, archives):
    for split in ("train", "test"):
        dataset = load(root, f"cifar100_{split}")
        expected = archives["cifar100"][split]
        assert [int(dataset[i][1]) for i in range(len(dataset))] == expected.labels.tolist()
        image, _ = dataset[3]
        assert image.shape == (3, 32, 32)
        # Green value of pixel (row 2, column 5) of record 3, standardised by CIFAR-100's statistics.
        assert image[1, 2, 5] == pytest.approx((expected.data[3][1024 + 2 * 32 + 5] / 255 - 0.4865) / 0.2564, 1e-5)


def test_a_missing_archive_names_the_file_to_put_where(root):
    with pytest.raises(TaskError) as error:
        load(root, "cifar10_train")
    (problem,) = error.value.problems
    assert problem.field == "test_datasets.members"
    assert f"{root.resolve()}/example/data/cifar-10-python.tar.gz not found" in problem.message
    assert "nothing is downloaded" in problem.message


def test_an_archive_of_another_layout_names_the_member_it_lacks(root):
    data = root / "example" / "data"
    data.mkdir(parents=True)
    with tarfile.open(data / "cifar-100-python.tar.gz", "w:gz") as archive:
        add_pickle(archive, "cifar-100-python/train", {b"data": rows(np.random.default_rng(0), 1), b"fine_labels": [0]})
    with pytest.raises(TaskError, match="has no member cifar-100-python/test"):
        load(root, "cifar100_test")


def test_the_resnet_folders_give_logits_per_class():
    paddle.seed(0)
    for name, classes in (("resnet18_10classes", 10), ("resnet34_100classes", 100)):
        model = storage.load_model(REPO, f"example/models/{name}", "shadow_model", trained=False)
        model.eval()
        assert model(paddle.rand([2, 3, 32, 32])).shape == [2, classes]


def test_the_task_file_is_the_seeds_with_the_examples_paths():
    ours = parse_yaml((EXAMPLE / "tasks" / "mem_inf_cifar.yaml").read_text())
    assert ours == parse_yaml((REPO / "tests" / "data" / "seed_mem_inf.yaml").read_text())
    for attack in ours.attacks:
        for key, value in attack.model_dump(exclude_none=True).items():
            paths = value.values() if key.endswith("_datasets") else [value] if key.endswith("_model") else []
            assert all((REPO / path).is_dir() for path in paths), (attack.name, key)


def test_baseline_runs_on_a_saved_resnet18_and_the_cifar10_folders(root, archives):
    paddle.seed(1)
    model = paddle.vision.models.resnet18(num_classes=10)
    paddle.save(model.state_dict(), str(root / "example/models/resnet18_10classes/resnet18_10classes.pdparams"))
    model.eval()
    expected = {}
    for split in ("train", "test"):
        dataset = load(root, f"cifar10_{split}")
        images = np.stack([dataset[i][0] for i in range(len(dataset))])
        with paddle.no_grad():
            predicted = model(paddle.to_tensor(images)).argmax(axis=1).numpy()
        expected[split] = float(np.mean(predicted == archives["cifar10"][split].labels))

    args = task_pb2.BaselineArgs(
        test_datasets=task_pb2.DatasetPair(members="./example/datasets/cifar10_train",
                                           non_members="./example/datasets/cifar10_test"),
        target_model="./example/models/resnet18_10classes")
    request = attack_worker_pb2.RunAttackRequest(task_id="cifar", attack_index=0, seed=3, attack=task_pb2.AttackSpec(
        type=task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE, baseline=args))
    result = run_job(request, WorkerSettings(str(root)), lambda progress: None)
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    assert [(d.name, d.length) for d in result.datasets] == [("cifar10_train", 30), ("cifar10_test", 10)]
    assert result.target_model.train_acc == pytest.approx(expected["train"])
    assert result.target_model.test_acc == pytest.approx(expected["test"])
    assert (result.metrics.num_members, result.metrics.num_non_members) == (10, 10)


def test_the_cifar_trainer_writes_weights_that_fit_the_model_folder(root, archives, monkeypatch):
    # As when run as a script, example/ is on sys.path: the trainer imports the digits trainer's loop.
    monkeypatch.syspath_prepend(str(EXAMPLE))
    # Absent now, and absent again after the test whatever the import adds (undone in reverse order).
    monkeypatch.setitem(sys.modules, "train_target", None)
    monkeypatch.delitem(sys.modules, "train_target")
    spec = importlib.util.spec_from_file_location("train_cifar_target", EXAMPLE / "train_cifar_target.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    output = root / "example/models/resnet18_10classes/resnet18_10classes.pdparams"
    accuracy = trainer.train_cifar_target(output, epochs=1, data=root / "example" / "data")
    assert 0.0 <= accuracy.train <= 1.0 and 0.0 <= accuracy.test <= 1.0
    storage.load_model(root, "example/models/resnet18_10classes", "target_model")  # refuses any misfit
