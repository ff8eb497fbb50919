"""Loading models and datasets from the storage root, as the seed's folder contract says.

A model folder holds one `.py` defining `get_model()` (a `paddle.nn.Layer`) and,
for a trained model, one `.pdparams` with its weights, read as data (`weights.py`:
nothing in the file runs). A dataset folder holds one `.py` defining `get_dataset()`:
anything with `__len__` and `__getitem__` giving `(sample, label)` records, with
finite samples; or, without a `.py`, a `data.npz` (data without code: `x` the samples,
`y` the labels, optional `ids` one per record, which the audit does not use: records
are named by position), read with pickling off and checked record by record as a
`.py`'s records are, so the same records give the same audit. Paths are relative to
the storage root and must stay inside it once symlinks are resolved; user code only
ever runs from inside it.

Every fault in a folder or its files is a `TaskError` at the task field that named
the folder (`target_model`, `test_datasets.members`, ...), saying which file and
what to do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from privaudit.services.attack_worker.weights import NotWeights, read_state_dict
from privaudit.services.common.errors import TaskError, one_line

if TYPE_CHECKING:
    import paddle

# How many offending keys a weights error lists before summarising the rest.
_KEYS_SHOWN = 5
# The file of a dataset folder without code.
NPZ_NAME = "data.npz"


def resolve_folder(root: str | os.PathLike[str], path: str, field: str) -> Path:
    """The real location of folder `path` (relative to `root`), refused unless it exists
    inside the root once symlinks are resolved."""
    if os.path.isabs(path):
        raise TaskError.at(field, f"'{path}' is absolute; give a folder relative to the storage root")
    real_root = _real(root)
    real = _inside(real_root, real_root / path, path, field)
    if not real.is_dir():
        what = "is a file, not a folder" if real.exists() else "does not exist"
        raise TaskError.at(field, f"'{path}' {what} under the storage root {real_root}")
    return real


def load_model(root: str | os.PathLike[str], path: str, field: str, trained: bool = True,
               seed: int | None = None) -> paddle.nn.Layer:
    """The model in folder `path`. With trained=True its `.pdparams` is loaded into it and must
    fit exactly (a model without weights, such as a fixed function, needs none); otherwise no
    weights are read, and `seed` (when given) seeds Paddle right before `get_model()` so that
    the fresh weights are reproducible."""
    real_root, code = _code_file(root, path, "the model code defining get_model()", field)
    weights = _only_file(real_root, code.parent, ".pdparams", "the trained weights", field,
                         optional=True) if trained else None
    module = _import(real_root, code, field)
    import paddle  # here, not at the top: the worker's serving process uses this module's paths alone

    if seed is not None:
        paddle.seed(seed)
    layer = _call(real_root, code, module, "get_model", field)
    if not isinstance(layer, paddle.nn.Layer):
        raise TaskError.at(field, f"{_shown(real_root, code)}: get_model() must return a paddle.nn.Layer, "
                                  f"got {_kind(layer)}")
    if weights is not None:
        _load_weights(layer, weights, f"the model built by {_shown(real_root, code)}", _shown(real_root, weights),
                      field)
    elif trained and layer.state_dict():
        raise TaskError.at(field, f"folder {_shown(real_root, code.parent)} holds no .pdparams file, but the model "
                                  f"built by {_shown(real_root, code)} has weights; add its trained weights "
                                  "(paddle.save(model.state_dict(), 'NAME.pdparams'))")
    return layer


def load_dataset(root: str | os.PathLike[str], path: str, field: str, max_length: int | None = None) -> Any:
    """What folder `path`'s `get_dataset()` returns (in a folder without a `.py`, its data.npz's
    records), checked to be non-empty, no longer than `max_length` records (when given) and
    with a readable first record."""
    real_root = _real(root)
    folder = resolve_folder(root, path, field)
    npz = data_without_code(folder)
    if npz is not None:
        shown = _shown(real_root, npz)
        dataset: Any = _read_npz(real_root, npz, field, max_length)
    else:
        code = _only_file(real_root, folder, ".py", "the dataset code defining get_dataset() (or, without one, "
                                                    f"a {NPZ_NAME} holding x and y)", field)
        shown = _shown(real_root, code)
        dataset = _call(real_root, code, _import(real_root, code, field), "get_dataset", field)
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TaskError.at(field, f"{shown}: get_dataset() must return a dataset with __len__ and __getitem__ "
                                  f"(e.g. a paddle.io.Dataset), got {_kind(dataset)}")
    try:
        length = len(dataset)
    except Exception as exc:
        raise TaskError.at(field, f"{shown}: len() of the dataset raised {one_line(exc)}") from exc
    if length == 0:
        raise TaskError.at(field, f"{shown}: get_dataset() returned an empty dataset")
    _refuse_longer(shown, length, max_length, field)
    read_records(dataset, [0], field)
    return dataset


def data_without_code(folder: Path) -> Path | None:
    """The folder's data.npz when the folder holds no `.py` (a `.py` takes precedence)."""
    npz = folder / NPZ_NAME
    return npz if npz.is_file() and not any(p.name.endswith(".py") for p in folder.iterdir()) else None


def _refuse_longer(shown: str, length: int, max_length: int | None, field: str) -> None:
    if max_length is not None and length > max_length:
        raise TaskError.at(field, f"{shown}: the dataset has {length:,} records; this worker reads at most "
                                  f"{max_length:,} (its --max-dataset-length)")


@dataclass(frozen=True, eq=False)
class ArrayRecords:
    """A data.npz's records: record i is (x[i], y[i]), read like any dataset's (`read_records`)."""

    samples: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.samples[index], self.labels[index]


def _read_npz(real_root: Path, npz: Path, field: str, max_length: int | None) -> ArrayRecords:
    """The records of a data.npz whose array headers pass preflight's checks (x numeric, y
    integer, ids if any, one entry per record), loaded with pickling off; x is not read when
    y already says there are more than `max_length` records."""
    from privaudit.services.common.preflight import npz_problems  # here: preflight imports this module

    problems = list(npz_problems(real_root, npz))
    if problems:
        raise TaskError.at(field, "; ".join(problems))
    try:
        with np.load(npz, allow_pickle=False) as arrays:  # reads each array when it is asked for
            labels = arrays["y"]
            _refuse_longer(_shown(real_root, npz), len(labels), max_length, field)
            return ArrayRecords(arrays["x"], labels)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise TaskError.at(field, f"cannot read {_shown(real_root, npz)}: {one_line(exc)}; write it with "
                                  "numpy.savez(path, x=..., y=...)") from exc


def model_digest(root: str | os.PathLike[str], path: str, field: str, layer: paddle.nn.Layer) -> str:
    """SHA-256 of what a trained model in folder `path` is: its `.py` and `.pdparams` files and the
    structure of the layer `get_model()` built (which also reflects code the `.py` imports)."""
    real_root, code = _code_file(root, path, "the model code defining get_model()", field)
    weights = _only_file(real_root, code.parent, ".pdparams", "the trained weights", field, optional=True)
    digest = hashlib.sha256()
    for file in (code, weights):
        if file is not None:
            digest.update(f"{file.suffix}\0{file.stat().st_size}\0".encode())
            with file.open("rb") as contents:
                for block in iter(lambda: contents.read(2**20), b""):
                    digest.update(block)
    digest.update(repr(layer).encode())
    return digest.hexdigest()


def read_records(dataset: Any, indices: Sequence[int], field: str) -> tuple[np.ndarray, np.ndarray]:
    """Records `indices` of a dataset as (samples float32 (k, *sample_shape) in the dataset's own
    layout, labels int64 (k,)). Labels may be ints or 0-d / shape-(1,) arrays or tensors;
    samples numpy arrays or paddle tensors of any layout, the same shape for every record, and
    finite (NaN or infinity is refused naming the record)."""
    samples, labels = [], []
    for index in map(int, indices):
        try:
            item = dataset[index]
        except Exception as exc:
            raise TaskError.at(field, f"reading record {index} raised {one_line(exc)}") from exc
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise TaskError.at(field, f"record {index} must be a (sample, label) pair, got {_kind(item)}")
        samples.append(_sample_array(item[0], index, field))
        labels.append(_label_int(item[1], index, field))
        if samples[-1].shape != samples[0].shape:
            raise TaskError.at(field, f"records have different shapes: record {indices[0]} is "
                                      f"{list(samples[0].shape)}, record {index} is {list(samples[-1].shape)}; "
                                      "every sample of a dataset must have the same shape")
    stacked = np.stack(samples)
    _refuse_non_finite(stacked, indices, field)
    return stacked, np.array(labels, dtype=np.int64)


# ---------------------------------------------------------------- internals


def _real(root: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(root))


def _code_file(root: str | os.PathLike[str], path: str, role: str, field: str) -> tuple[Path, Path]:
    """The real storage root and the one `.py` of folder `path`."""
    return _real(root), _only_file(_real(root), resolve_folder(root, path, field), ".py", role, field)


def _inside(real_root: Path, path: Path, shown: str, field: str) -> Path:
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(real_root):
        raise TaskError.at(field, f"'{shown}' leads outside the storage root (to {real}); keep models and "
                                  "datasets, and anything their symlinks point to, inside it")
    return real


def _only_file(real_root: Path, folder: Path, suffix: str, role: str, field: str,
               optional: bool = False) -> Path | None:
    """The folder's single file ending in `suffix`, checked to be inside the root; None when
    there is none and that is allowed."""
    found = sorted(p for p in folder.iterdir() if p.name.endswith(suffix) and p.is_file())
    if optional and not found:
        return None
    if len(found) != 1:
        got = f"found {len(found)}: {', '.join(p.name for p in found)}" if found else "found none"
        raise TaskError.at(field, f"folder {_shown(real_root, folder)} must hold exactly one {suffix} file, "
                                  f"{role}; {got}")
    return _inside(real_root, found[0], _shown(real_root, found[0]), field)


def _import(real_root: Path, code: Path, field: str) -> ModuleType:
    """Runs `code` as a fresh module named after its real path (never via sys.path), so that
    two folders' same-named files are two modules."""
    name = "_privaudit_user_" + hashlib.sha256(str(code).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, code)
    assert spec is not None and spec.loader is not None  # always so for a .py file
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look classes up here
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise TaskError.at(field, f"importing {_shown(real_root, code)} raised {one_line(exc)}") from exc
    return module


def _call(real_root: Path, code: Path, module: ModuleType, function: str, field: str) -> Any:
    factory = getattr(module, function, None)
    if not callable(factory):
        raise TaskError.at(field, f"{_shown(real_root, code)} must define {function}()")
    try:
        return factory()
    except (Exception, SystemExit) as exc:
        raise TaskError.at(field, f"{_shown(real_root, code)}: {function}() raised {one_line(exc)}") from exc


def _load_weights(layer: paddle.nn.Layer, weights: Path, model: str, shown: str, field: str) -> None:
    """Loads `weights` into `layer`, read as data (`weights.read_state_dict`: nothing in the file
    runs), refusing any missing, unexpected, mis-shaped or mis-typed key (Paddle itself only warns
    about the first three and leaves the parameters as initialised)."""
    try:
        arrays = read_state_dict(weights)
    except NotWeights as exc:
        raise TaskError.at(field, f"{shown} holds something other than weights: {exc}. It was not loaded and "
                                  "nothing in it ran; give the state dict written by "
                                  "paddle.save(model.state_dict(), 'NAME.pdparams')") from exc
    except OSError as exc:
        raise TaskError.at(field, f"cannot read {shown}: {one_line(exc)}") from exc
    import paddle

    # As paddle.load does: numpy arrays become tensors (uint16 ones bfloat16).
    state = {key: paddle.to_tensor(array) for key, array in arrays.items()}
    expected = {key: (tuple(value.shape), value.dtype) for key, value in layer.state_dict().items()}
    problems = _key_problems(expected, {key: (tuple(value.shape), value.dtype) for key, value in state.items()})
    if not problems:
        missing, unexpected = layer.set_state_dict(state)
        problems = _key_problems({k: None for k in missing}, {k: None for k in unexpected})
    if problems:
        raise TaskError.at(field, f"{shown} does not fit {model}: {'; '.join(problems)}. Save the weights with "
                                  "paddle.save(model.state_dict(), ...) from the same get_model()")


def _key_problems(expected: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """What keeps `given` (name -> (shape, dtype)) from fitting `expected`, one phrase per kind of fault."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    both = [k for k in expected if k in given]
    misshaped = [f"{k} {list(given[k][0])} (the model's is {list(expected[k][0])})"
                 for k in both if given[k][0] != expected[k][0]]
    mistyped = [f"{k} {_dtype_name(given[k][1])} (the model's is {_dtype_name(expected[k][1])})"
                for k in both if given[k][0] == expected[k][0] and given[k][1] != expected[k][1]]
    return [f"{label}: {_first(keys)}" for label, keys in
            (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", misshaped),
             ("wrong dtypes", mistyped)) if keys]


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("paddle.")


def _first(items: list[str]) -> str:
    more = len(items) - _KEYS_SHOWN
    return ", ".join(items[:_KEYS_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _sample_array(sample: Any, index: int, field: str) -> np.ndarray:
    import paddle

    if isinstance(sample, paddle.Tensor):
        sample = sample.numpy()
    try:
        array = np.asarray(sample, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TaskError.at(field, f"the sample of record {index} must be a numeric array or tensor, "
                                  f"got {_kind(sample)} ({exc})") from exc
    if array.ndim == 0:
        raise TaskError.at(field, f"the sample of record {index} is a single number; it must be an array")
    return array


def _refuse_non_finite(samples: np.ndarray, indices: Sequence[int], field: str) -> None:
    """Refuses samples holding NaN or infinity, naming the first such record. Their minimum and
    maximum are finite exactly when every value is (NaN propagates through both): two passes
    without an allocation, half the time of `np.isfinite(samples).all()`."""
    if samples.size == 0 or (np.isfinite(samples.min()) and np.isfinite(samples.max())):
        return
    row = int(np.flatnonzero(~np.isfinite(samples.reshape(len(samples), -1)).all(axis=1))[0])
    raise TaskError.at(field, f"the sample of record {int(indices[row])} holds NaN or infinite values (or values "
                              "beyond float32's range, about 3.4e38), and an audit on such samples measures nothing; "
                              "fix, impute or drop such records in get_dataset() (or in the data.npz)")


def _label_int(label: Any, index: int, field: str) -> int:
    """A label given as an int, a 0-d or shape-(1,) array or tensor, as a non-negative int."""
    import paddle

    if isinstance(label, paddle.Tensor):
        label = label.numpy()
    array = np.asarray(label)
    usable = array.size == 1 and array.ndim <= 1 and array.dtype.kind in "iuf"
    value = array.reshape(()).item() if usable else None
    if value is None or not np.isfinite(value) or value != int(value) or value < 0:
        raise TaskError.at(field, f"the label of record {index} must be a class index (an int >= 0, or a 0-d "
                                  f"or shape-(1,) integer array), got {_kind(label)} {array.tolist()!r}")
    return int(value)


def _shown(real_root: Path, path: Path) -> str:
    """`path` as users know it: relative to the storage root."""
    return str(path.relative_to(real_root))


def _kind(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"
