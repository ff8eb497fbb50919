"""The storage contract: containment in the root, the folder layout, user code, weights, datasets."""

from __future__ import annotations

import numpy as np
import paddle
import pytest
from worker_fixtures import (
    LABEL_FORMS,
    LAYOUTS,
    MODEL_CODE,
    NUM_CLASSES,
    SAMPLE_FORMS,
    identity_weights,
    records,
    write_dataset,
    write_model,
)

from privaudit.services.attack_worker import storage
from privaudit.services.common.errors import TaskError

FIELD = "target_model"


def error_of(call, *args, **kwargs) -> TaskError:
    with pytest.raises(TaskError) as caught:
        call(*args, **kwargs)
    assert caught.value.field == FIELD
    return caught.value


# ---------------------------------------------------------------- containment


def test_a_folder_inside_the_root_resolves_to_its_real_path(tmp_path):
    folder = write_model(tmp_path / "models" / "net")
    assert storage.resolve_folder(tmp_path, "./models/../models/net", FIELD) == folder.resolve()


@pytest.mark.parametrize("path", ["../outside", "models/../../outside", "/etc"])
def test_a_path_leaving_the_root_is_refused(tmp_path, path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    message = str(error_of(storage.resolve_folder, root, path, FIELD))
    assert "absolute" in message or "outside the storage root" in message


def test_a_symlink_pointing_out_of_the_root_is_refused(tmp_path):
    outside = write_model(tmp_path / "outside", identity_weights())
    root = tmp_path / "root"
    root.mkdir()
    (root / "net").symlink_to(outside)
    assert "outside the storage root" in str(error_of(storage.load_model, root, "net", FIELD))


def test_a_code_file_symlinked_out_of_the_root_is_refused(tmp_path):
    (tmp_path / "evil.py").write_text("def get_model():\n    raise SystemExit('ran code outside the root')\n")
    folder = tmp_path / "root" / "net"
    folder.mkdir(parents=True)
    (folder / "model.py").symlink_to(tmp_path / "evil.py")
    message = str(error_of(storage.load_model, tmp_path / "root", "net", FIELD, trained=False))
    assert "outside the storage root" in message


def test_a_symlink_staying_inside_the_root_is_followed(tmp_path):
    write_model(tmp_path / "real", identity_weights())
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert isinstance(storage.load_model(tmp_path, "alias", FIELD), paddle.nn.Layer)


@pytest.mark.parametrize(("make", "expected"), [(lambda p: None, "does not exist"),
                                                 (lambda p: p.write_text(""), "is a file, not a folder")])
def test_a_missing_folder_or_a_file_is_refused(tmp_path, make, expected):
    make(tmp_path / "net")
    assert expected in str(error_of(storage.load_model, tmp_path, "net", FIELD))


# ---------------------------------------------------------------- model folders


def test_a_folder_without_a_py_file_is_refused(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "notes.txt").write_text("")
    message = str(error_of(storage.load_model, tmp_path, "net", FIELD))
    assert "exactly one .py file" in message and "found none" in message


def test_a_folder_with_two_py_files_is_refused_naming_them(tmp_path):
    write_model(tmp_path / "net", identity_weights())
    (tmp_path / "net" / "helpers.py").write_text("")
    message = str(error_of(storage.load_model, tmp_path, "net", FIELD))
    assert "found 2: helpers.py, model.py" in message


def test_a_missing_get_model_is_refused_naming_the_file(tmp_path):
    write_model(tmp_path / "net", identity_weights(), code="import paddle\n")
    assert "net/model.py must define get_model()" in str(error_of(storage.load_model, tmp_path, "net", FIELD))


def test_a_raising_get_model_names_the_file_and_the_exception(tmp_path):
    write_model(tmp_path / "net", identity_weights(), code="def get_model():\n    raise KeyError('layers')\n")
    message = str(error_of(storage.load_model, tmp_path, "net", FIELD))
    assert "net/model.py: get_model() raised KeyError: 'layers'" in message


def test_code_that_does_not_import_names_the_file_and_the_exception(tmp_path):
    write_model(tmp_path / "net", identity_weights(), code="import paddle_that_does_not_exist\n")
    message = str(error_of(storage.load_model, tmp_path, "net", FIELD))
    assert "importing net/model.py raised ModuleNotFoundError" in message


def test_get_model_must_return_a_layer(tmp_path):
    write_model(tmp_path / "net", identity_weights(), code="def get_model():\n    return 'a model'\n")
    assert "must return a paddle.nn.Layer, got a str" in str(error_of(storage.load_model, tmp_path, "net", FIELD))


def test_trained_weights_are_loaded(tmp_path):
    weights = identity_weights()
    weights["linear.bias"] = np.arange(NUM_CLASSES, dtype=np.float32)
    write_model(tmp_path / "net", weights)
    layer = storage.load_model(tmp_path, "net", FIELD)
    np.testing.assert_array_equal(layer.linear.weight.numpy(), weights["linear.weight"])
    np.testing.assert_array_equal(layer.linear.bias.numpy(), weights["linear.bias"])


def test_a_trained_model_with_weights_needs_its_pdparams(tmp_path):
    write_model(tmp_path / "net", None)
    message = str(error_of(storage.load_model, tmp_path, "net", FIELD))
    assert "holds no .pdparams file, but the model built by net/model.py has weights" in message


def test_two_pdparams_are_refused(tmp_path):
    write_model(tmp_path / "net", identity_weights())
    paddle.save({"w": paddle.zeros([1])}, str(tmp_path / "net" / "extra.pdparams"))
    message = str(error_of(storage.load_model, tmp_path, "net", FIELD))
    assert "exactly one .pdparams file" in message and "found 2: extra.pdparams, model.pdparams" in message


def test_a_model_without_weights_needs_no_pdparams(tmp_path):
    (tmp_path / "fixed").mkdir()
    (tmp_path / "fixed" / "fixed.py").write_text(
        "import paddle\n"
        "class Fixed(paddle.nn.Layer):\n"
        "    def forward(self, x):\n"
        "        return paddle.zeros([x.shape[0], 3])\n"
        "def get_model():\n"
        "    return Fixed()\n")
    assert storage.load_model(tmp_path, "fixed", FIELD)(paddle.zeros([2, 5])).shape == [2, 3]


def test_weights_that_do_not_fit_are_refused_listing_every_fault(tmp_path):
    write_model(tmp_path / "net", {"linear.weight": np.zeros((NUM_CLASSES, 3), np.float32),
                                   "head.bias": np.zeros(2, np.float32)})
    message = str(error_of(storage.load_model, tmp_path, "net", FIELD))
    assert "net/model.pdparams does not fit the model built by net/model.py" in message
    assert "missing keys: linear.bias" in message
    assert "unexpected keys: head.bias" in message
    assert "wrong shapes: linear.weight [4, 3] (the model's is [4, 4])" in message


def test_a_weights_file_that_is_not_a_state_dict_is_refused(tmp_path):
    write_model(tmp_path / "net")
    (tmp_path / "net" / "model.pdparams").write_bytes(b"not a pickle")
    message = str(error_of(storage.load_model, tmp_path, "net", FIELD))
    assert "net/model.pdparams holds something other than weights: it is not a pickle written by paddle.save" \
        in message


def test_a_fresh_model_ignores_weights_and_is_seeded(tmp_path):
    write_model(tmp_path / "net", {"garbage": np.zeros(1, np.float32)})
    first, again, other = (storage.load_model(tmp_path, "net", FIELD, trained=False, seed=seed)
                           for seed in (3, 3, 4))
    np.testing.assert_array_equal(first.linear.weight.numpy(), again.linear.weight.numpy())
    assert not np.array_equal(first.linear.weight.numpy(), other.linear.weight.numpy())


# ---------------------------------------------------------------- datasets


def test_two_dataset_files_with_the_same_name_load_as_two_datasets(tmp_path):
    write_dataset(tmp_path / "a", *records([0, 1, 2], [True] * 3))
    write_dataset(tmp_path / "b", *records([3, 3], [True] * 2))
    a = storage.load_dataset(tmp_path, "a", FIELD)
    b = storage.load_dataset(tmp_path, "b", FIELD)
    assert (len(a), len(b)) == (3, 2)
    assert type(a).__module__ != type(b).__module__
    assert storage.read_records(b, [0, 1], FIELD)[1].tolist() == [3, 3]


@pytest.mark.parametrize("label_form", list(LABEL_FORMS))
@pytest.mark.parametrize("sample_form", list(SAMPLE_FORMS))
def test_every_label_and_sample_form_reads_as_float32_samples_and_int64_labels(tmp_path, label_form,
                                                                                sample_form):
    samples, labels = records([2, 0, 3], [True, False, True], layout="CHW")
    write_dataset(tmp_path / "d", samples, labels, label_form=label_form, sample_form=sample_form)
    read_samples, read_labels = storage.read_records(storage.load_dataset(tmp_path, "d", FIELD), [2, 0], FIELD)
    assert read_samples.dtype == np.float32 and read_labels.dtype == np.int64
    np.testing.assert_array_equal(read_samples, samples[[2, 0]])
    assert read_labels.tolist() == [3, 2]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_samples_keep_their_layout(tmp_path, layout):
    write_dataset(tmp_path / "d", *records([1, 2], [True, True], layout=layout))
    read_samples, _ = storage.read_records(storage.load_dataset(tmp_path, "d", FIELD), [0, 1], FIELD)
    assert read_samples.shape == (2, *LAYOUTS[layout])


def dataset_code(get_dataset_body: str) -> str:
    return f"import numpy as np\n\n\ndef get_dataset():\n    {get_dataset_body}\n"


@pytest.mark.parametrize(("body", "expected"), [
    ("return []", "get_dataset() returned an empty dataset"),
    ("return 42", "must return a dataset with __len__ and __getitem__"),
    ("return [np.zeros(3)]", "record 0 must be a (sample, label) pair, got a ndarray"),
    ("return [(np.zeros(3), np.array([1, 2]))]", "the label of record 0 must be a class index"),
    ("return [(np.zeros(3), -1)]", "the label of record 0 must be a class index"),
    ("return [(np.zeros(3), 1.5)]", "the label of record 0 must be a class index"),
    ("return [(np.zeros(3), float('nan'))]", "the label of record 0 must be a class index"),
    ("return [(np.zeros(3), np.array([np.inf]))]", "the label of record 0 must be a class index"),
    ("return [(np.array([0.0, np.nan, 1.0]), 0)]", "the sample of record 0 holds NaN or infinite values"),
    ("return [('pixels', 1)]", "the sample of record 0 must be a numeric array or tensor"),
])
def test_datasets_breaking_the_contract_are_refused(tmp_path, body, expected):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "dataset.py").write_text(dataset_code(body))
    assert expected in str(error_of(storage.load_dataset, tmp_path, "d", FIELD))


def test_samples_of_different_shapes_are_refused(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "dataset.py").write_text(dataset_code("return [(np.zeros(3), 0), (np.zeros(4), 1)]"))
    dataset = storage.load_dataset(tmp_path, "d", FIELD)
    message = str(error_of(storage.read_records, dataset, [0, 1], FIELD))
    assert "record 0 is [3], record 1 is [4]" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39], ids=["nan", "inf", "-inf", "beyond float32"])
@pytest.mark.parametrize("sample_form", list(SAMPLE_FORMS))
def test_non_finite_samples_are_refused_naming_the_first_such_record(tmp_path, bad, sample_form):
    samples, labels = records([0, 1, 2, 3, 0], [True] * 5, layout="CHW")
    samples = samples.astype(np.float64)
    samples[[3, 1], 0, 1, 0] = bad
    write_dataset(tmp_path / "d", samples, labels, sample_form=sample_form)
    dataset = storage.load_dataset(tmp_path, "d", FIELD)
    message = str(error_of(storage.read_records, dataset, [4, 3, 0, 1], FIELD))
    assert "the sample of record 3 holds NaN or infinite values" in message
    assert storage.read_records(dataset, [0, 2, 4], FIELD)[0].shape == (3, 1, 2, 2)


def test_a_model_file_is_run_fresh_from_its_own_path(tmp_path):
    """Editing a model file between jobs takes effect: nothing stale is served from sys.modules."""
    write_model(tmp_path / "net", code=MODEL_CODE)
    assert storage.load_model(tmp_path, "net", FIELD, trained=False).linear.weight.shape == [4, 4]
    write_model(tmp_path / "net", code=MODEL_CODE.replace(f"Linear({NUM_CLASSES}, {NUM_CLASSES})",
                                                          f"Linear({NUM_CLASSES}, 2)"))
    assert storage.load_model(tmp_path, "net", FIELD, trained=False).linear.weight.shape == [4, 2]
