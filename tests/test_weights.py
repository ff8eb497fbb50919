"""`.pdparams` files are read as data: what paddle.save writes loads exactly as paddle.load loads it,
and a crafted file that would run code under paddle.load is refused, naming the file, with nothing
in it run (checked by marker files that its payload would create), in-process and through a real
worker job in its child process."""

from __future__ import annotations

import contextlib
import copyreg
import io
import os
import pickle
import struct
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import paddle
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from worker_fixtures import MODEL_CODE, baseline_request, served_worker, write_audit_tree

from privaudit.services.attack_worker import storage
from privaudit.services.attack_worker.server import SERVICE_NAME
from privaudit.services.attack_worker.weights import NotWeights, read_state_dict
from privaudit.services.common.errors import TaskError
from privaudit.v1 import results_pb2

FIELD = "target_model"
EXAMPLE_MODELS = Path(__file__).resolve().parents[1] / "example" / "models"
EXAMPLE_WEIGHTS = EXAMPLE_MODELS / "digits_mlp" / "digits_mlp.pdparams"

# Two architectures: an MLP, and a CNN with BatchNorm (running mean and variance are buffers)
# plus an int64 and a bool buffer; floating weights in DTYPE.
ARCHITECTURES = '''
import paddle

ARCH = {arch!r}
DTYPE = {dtype!r}


class Mlp(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.hidden = paddle.nn.Linear(8, 16)
        self.out = paddle.nn.Linear(16, 3)

    def forward(self, x):
        return self.out(paddle.nn.functional.relu(self.hidden(paddle.flatten(x, 1))))


class Cnn(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(1, 4, 3, padding=1)
        self.bn = paddle.nn.BatchNorm2D(4)
        self.fc = paddle.nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(paddle.flatten(paddle.nn.functional.relu(self.bn(self.conv(x))), 1))


def get_model():
    layer = Mlp() if ARCH == "mlp" else Cnn()
    layer.to(dtype=DTYPE)
    if ARCH == "cnn":
        layer.register_buffer("steps", paddle.to_tensor([7, 9], dtype="int64"))
        layer.register_buffer("mask", paddle.to_tensor([True, False]))
    return layer
'''

SAVED = [("mlp", "float32"), ("cnn", "float32"), ("cnn", "float16"), ("cnn", "bfloat16"), ("cnn", "float64")]


def trained_model_folder(root: Path, arch: str, dtype: str, protocol: int) -> tuple[Path, dict[str, np.ndarray]]:
    """A model folder whose weights paddle.save wrote (with `protocol`) from a model whose every
    parameter and buffer (BatchNorm's running statistics included) holds seeded random values,
    unlike a fresh one. Returns the folder and the saved state as arrays."""
    folder = root / f"{arch}_{dtype}_{protocol}"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(ARCHITECTURES.format(arch=arch, dtype=dtype))
    layer = storage.load_model(root, folder.name, FIELD, trained=False, seed=11)
    rng = np.random.default_rng(3)
    for value in layer.state_dict().values():
        if value.dtype == paddle.bool:
            value.set_value(paddle.to_tensor(rng.random(value.shape) < 0.5))
        elif value.dtype == paddle.int64:
            value.set_value(paddle.to_tensor(rng.integers(-2**40, 2**40, value.shape)))
        else:
            value.set_value(paddle.to_tensor(rng.normal(size=value.shape).astype(np.float32)).astype(value.dtype))
    state = layer.state_dict()
    paddle.save(state, str(folder / "model.pdparams"), protocol=protocol)
    return folder, {key: value.numpy() for key, value in state.items()}


def assert_same_state(layer: paddle.nn.Layer, arrays: dict[str, np.ndarray]) -> None:
    state = layer.state_dict()
    assert sorted(state) == sorted(arrays)
    for key, value in state.items():
        assert value.numpy().dtype == arrays[key].dtype, key
        np.testing.assert_array_equal(value.numpy(), arrays[key], err_msg=key)


# ---------------------------------------------------------------- legitimate files


@pytest.mark.parametrize("protocol", [2, 3, 4])
@pytest.mark.parametrize(("arch", "dtype"), SAVED)
def test_paddle_save_files_load_to_the_parameters_paddle_load_gives(tmp_path, arch, dtype, protocol):
    folder, saved = trained_model_folder(tmp_path, arch, dtype, protocol)
    weights = folder / "model.pdparams"

    by_paddle = paddle.load(str(weights))
    ours = read_state_dict(weights)
    assert sorted(ours) == sorted(by_paddle)
    for key, array in ours.items():
        assert paddle.to_tensor(array).dtype == by_paddle[key].dtype, key
        np.testing.assert_array_equal(array, by_paddle[key].numpy(), err_msg=key)

    reference = storage.load_model(tmp_path, folder.name, FIELD, trained=False, seed=99)
    reference.set_state_dict(by_paddle)
    assert_same_state(reference, saved)
    assert_same_state(storage.load_model(tmp_path, folder.name, FIELD), saved)


@pytest.mark.skipif(not EXAMPLE_WEIGHTS.exists(), reason="make example writes the example's weights")
def test_the_examples_trained_weights_read_as_paddle_load_reads_them():
    by_paddle = paddle.load(str(EXAMPLE_WEIGHTS))
    ours = read_state_dict(EXAMPLE_WEIGHTS)
    assert sorted(ours) == sorted(by_paddle)
    for key, array in ours.items():
        np.testing.assert_array_equal(array, by_paddle[key].numpy())


def test_the_cifar_targets_resnet_loads_as_paddle_load_loads_it(tmp_path):
    """The seed's CIFAR target (ResNet-18: 20 BatchNorm layers, whose statistics a training step moves)."""
    folder = tmp_path / "resnet"
    folder.mkdir()
    (folder / "model.py").write_text((EXAMPLE_MODELS / "resnet18_10classes" / "resnet18_10classes.py").read_text())
    layer = storage.load_model(tmp_path, "resnet", FIELD, trained=False, seed=2)
    layer.train()
    layer(paddle.randn([2, 3, 32, 32]))
    saved = {key: value.numpy() for key, value in layer.state_dict().items()}
    paddle.save(layer.state_dict(), str(folder / "model.pdparams"))

    reference = storage.load_model(tmp_path, "resnet", FIELD, trained=False, seed=3)
    reference.set_state_dict(paddle.load(str(folder / "model.pdparams")))
    assert_same_state(reference, saved)
    assert_same_state(storage.load_model(tmp_path, "resnet", FIELD), saved)


def test_arrays_split_in_slices_are_joined_as_paddle_load_joins_them(tmp_path):
    """paddle.save splits arrays over 1 GiB into slices under protocols 2 and 3: the same layout,
    small, written by hand."""
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    state = {"fc.weight@@.0": weight.reshape(-1)[:5], "fc.weight@@.1": weight.reshape(-1)[5:],
             "fc.bias": np.ones(4, np.float32),
             "UnpackBigParamInfor@@": {"fc.weight": {"OriginShape": (3, 4),  # typos: disable-line
                                                     "slices": ["fc.weight@@.0", "fc.weight@@.1"]}},
             "StructuredToParameterName@@": {"fc.weight": "linear_0.w_0", "fc.bias": "linear_0.b_0"}}
    path = tmp_path / "split.pdparams"
    path.write_bytes(pickle.dumps(state, protocol=2))
    ours = read_state_dict(path)
    by_paddle = paddle.load(str(path))
    assert sorted(ours) == sorted(by_paddle) == ["fc.bias", "fc.weight"]
    for key, array in ours.items():
        np.testing.assert_array_equal(array, by_paddle[key].numpy())
    np.testing.assert_array_equal(ours["fc.weight"], weight)


def test_weights_of_another_dtype_are_refused_naming_them(tmp_path):
    folder, _ = trained_model_folder(tmp_path, "mlp", "float32", 4)
    state = paddle.load(str(folder / "model.pdparams"))
    paddle.save({key: value.astype("float16") for key, value in state.items()}, str(folder / "model.pdparams"))
    with pytest.raises(TaskError) as refused:
        storage.load_model(tmp_path, folder.name, FIELD)
    assert "wrong dtypes: hidden.weight float16 (the model's is float32)" in str(refused.value)


# ---------------------------------------------------------------- crafted files


class Call:
    """Pickles as a call of `function(*args)`: what a crafted weights file does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


class Anything:
    """An arbitrary class of the pickling process."""

    def __init__(self):
        self.value = 1


def shell_writes(marker: Path) -> Call:
    return Call(os.system, f"echo ran > {marker}")


def python_writes(marker: Path, run=exec) -> Call:
    return Call(run, f"open({str(marker)!r}, 'w').write('ran')")


def state_with(value) -> dict:
    """A state dict as paddle.save writes it, with `value` as one parameter."""
    return {"linear.weight": value, "linear.bias": np.zeros(4, np.float32),
            "StructuredToParameterName@@": {"linear.weight": "w", "linear.bias": "b"}}


def split_state(slices: list[str]) -> dict:
    """An array of 4 values split as paddle.save splits big ones, naming `slices`."""
    return {"w@@.0": np.zeros(2, np.float32), "w@@.1": np.ones(2, np.float32),
            "UnpackBigParamInfor@@": {"w": {"OriginShape": (2, 2), "slices": slices}}}  # typos: disable-line


# name -> (pickle bytes given the marker path, words the refusal must hold)
CRAFTED = {
    "os.system": (lambda m: pickle.dumps(shell_writes(m)), ["posix.system"]),
    "os.system, protocol 2": (lambda m: pickle.dumps(shell_writes(m), protocol=2), ["posix.system"]),
    "builtins.exec": (lambda m: pickle.dumps(python_writes(m)), ["builtins.exec"]),
    "builtins.eval": (lambda m: pickle.dumps(python_writes(m, eval)), ["builtins.eval"]),
    "subprocess.Popen": (lambda m: pickle.dumps(Call(subprocess.Popen, ["touch", str(m)])), ["subprocess.Popen"]),
    "os.system in a dict value": (lambda m: pickle.dumps(state_with(shell_writes(m))), ["posix.system"]),
    "exec in the name table": (
        lambda m: pickle.dumps({"w": np.zeros(2, np.float32),
                                "StructuredToParameterName@@": {"w": python_writes(m)}}), ["builtins.exec"]),
    "exec deep in a list in a tuple": (
        lambda m: pickle.dumps(state_with(np.zeros(2)) | {"x": [(1, [python_writes(m)])]}), ["builtins.exec"]),
    "an arbitrary class": (lambda m: pickle.dumps(state_with(Anything())), ["NEWOBJ"]),
    "an arbitrary class by REDUCE": (lambda m: pickle.dumps(state_with(Call(Anything))), ["test_weights.Anything"]),
    "another numpy function": (lambda m: pickle.dumps(Call(np.load, str(m))), ["numpy.load"]),
    "a numpy array subclass": (lambda m: pickle.dumps(state_with(np.ma.masked_array([1.0]))), ["numpy.ma"]),
    "an object array": (lambda m: pickle.dumps(state_with(np.array([1, "a"], dtype=object))), ["dtype 'O8'"]),
    "a structured array": (lambda m: pickle.dumps(state_with(np.zeros(2, [("a", "f4")]))), ["dtype 'V4'"]),
    "a list for a parameter": (lambda m: pickle.dumps(state_with([1, 2])), ["'linear.weight' holds a list"]),
    "a list, not a dict": (lambda m: pickle.dumps([np.zeros(2, np.float32)]), ["holds a list"]),
    "a slice named twice": (lambda m: pickle.dumps(split_state(["w@@.0", "w@@.0"])), ["does not describe slices"]),
    "slices that do not add up": (lambda m: pickle.dumps(split_state(["w@@.0"])), ["do not add up"]),
    "a slice that is not there": (lambda m: pickle.dumps(split_state(["w@@.0", "x"])), ["does not describe slices"]),
    # Protocol-level tricks, written by hand.
    "protocol 0": (lambda m: pickle.dumps(shell_writes(m), protocol=0), ["not a pickle written by paddle.save"]),
    "protocol 5": (lambda m: pickle.dumps({}, protocol=5), ["not a pickle written by paddle.save"]),
    "an out-of-band buffer": (lambda m: b"\x80\x04\x97.", ["NEXT_BUFFER"]),
    "NEWOBJ of a class": (lambda m: b"\x80\x04\x8c\x08builtins\x8c\x06object\x93)\x81.", ["NEWOBJ"]),
    "OBJ": (lambda m: b"\x80\x02(cos\nsystem\nX\x04\x00\x00\x00trueo.", ["OBJ"]),
    "INST": (lambda m: b"\x80\x02(X\x04\x00\x00\x00trueios\nsystem\n.", ["INST"]),
    "persistent id": (lambda m: b"\x80\x02X\x01\x00\x00\x00aQ.", ["BINPERSID"]),
    "extension code": (lambda m: b"\x80\x02\x83\x0d\xf0X\x04\x00\x00\x00true\x85R.", ["EXT2"]),
    "memo index far ahead": (lambda m: b"\x80\x02}r\xff\xff\xff\x7f.", ["memo entry 2147483647"]),
    "bytes longer than the file": (lambda m: b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"x.", ["well-formed"]),
    "truncated": (lambda m: pickle.dumps(state_with(np.zeros(64, np.float32)))[:-40], ["well-formed"]),
    "a pickle with data after it": (lambda m: pickle.dumps({}) + b"PK\x03\x04", ["4 bytes follow the pickle"]),
    "a zip archive": (lambda m: zip_holding(pickle.dumps(shell_writes(m))), ["not a pickle written by paddle"]),
    "a tar archive": (lambda m: tar_holding(pickle.dumps(shell_writes(m))), ["not a pickle written by paddle"]),
    "text": (lambda m: b"not a pickle", ["not a pickle written by paddle.save"]),
}


def zip_holding(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", data)
    return buffer.getvalue()


def tar_holding(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("data.pkl")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def crafted(tmp_path: Path, name: str) -> tuple[Path, Path, list[str]]:
    """The crafted file `name` as tmp_path/crafted.pdparams, the marker its payload would create,
    and the words its refusal must hold."""
    marker = tmp_path / "payload-ran"
    make, words = CRAFTED[name]
    path = tmp_path / "crafted.pdparams"
    path.write_bytes(make(marker))
    return path, marker, words


@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "os.system in a dict value", "exec in the name table"])
def test_the_crafted_files_are_real_attacks_under_paddle_load(tmp_path, name):
    """A control: the payloads do run when paddle.load reads them (so their refusal below means something)."""
    path, marker, _ = crafted(tmp_path, name)
    with contextlib.suppress(Exception):  # what it returns or raises after the payload ran does not matter
        paddle.load(str(path))
    assert marker.exists()


@pytest.mark.parametrize("name", list(CRAFTED))
def test_a_crafted_file_is_refused_saying_why_and_nothing_in_it_runs(tmp_path, name):
    path, marker, words = crafted(tmp_path, name)
    with pytest.raises(NotWeights) as refused:
        read_state_dict(path)
    for word in words:
        assert word in str(refused.value)
    assert not marker.exists()


LEGIT = {protocol: pickle.dumps(state_with(np.arange(16, dtype=np.float32).reshape(4, 4)) | {
    "UnpackBigParamInfor@@": {}}, protocol=protocol) for protocol in (2, 4)}  # typos: disable-line


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(protocol=st.sampled_from([2, 4]), edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255),
                                                                  st.sampled_from(["set", "insert", "delete"])),
                                                        min_size=1, max_size=4))
def test_a_damaged_weights_file_is_refused_as_not_weights_and_nothing_else(tmp_path, protocol, edits):
    """Bytes changed, inserted or deleted anywhere in a valid file: every outcome is a dict of
    arrays or NotWeights, never another exception (which would end the job as a worker fault)."""
    data = bytearray(LEGIT[protocol])
    for position, value, edit in edits:
        at = position % (len(data) + (edit == "insert"))
        if edit == "set" and at < len(data):
            data[at] = value
        elif edit == "insert":
            data.insert(at, value)
        elif data and at < len(data):
            del data[at]
    path = tmp_path / "damaged.pdparams"
    path.write_bytes(bytes(data))
    try:
        state = read_state_dict(path)
    except NotWeights:
        return
    assert all(isinstance(key, str) and isinstance(value, np.ndarray) for key, value in state.items())


def test_a_registered_extension_code_still_resolves_to_nothing(tmp_path):
    """EXT opcodes name globals through copyreg's registry: refused before the lookup."""
    marker = tmp_path / "payload-ran"
    copyreg.add_extension("posix", "system", 0xF00D)
    try:
        data = pickle.dumps(shell_writes(marker), protocol=2)
    finally:
        copyreg.remove_extension("posix", "system", 0xF00D)
    path = tmp_path / "crafted.pdparams"
    path.write_bytes(data)
    with pytest.raises(NotWeights, match="EXT2"):
        read_state_dict(path)
    assert not marker.exists()


def test_build_changes_neither_a_stand_in_nor_numpys_shared_dtypes(tmp_path):
    """BUILD sets attributes on the object below it. Aimed at numpy.dtype's stand-in it fails; a
    dtype's own BUILD (here switching its byte order) changes a copy, never numpy's float32."""
    path = tmp_path / "crafted.pdparams"
    path.write_bytes(b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93}\x8c\x08__call__\x8c\x02hisb.")
    with pytest.raises(NotWeights, match="AttributeError"):
        read_state_dict(path)
    path.write_bytes(pickle.dumps({"w": np.arange(3, dtype=">f4")}))
    np.testing.assert_array_equal(read_state_dict(path)["w"], [0, 1, 2])
    assert np.dtype("f4").str == np.zeros(1, np.float32).dtype.str == "<f4"


def test_a_crafted_file_fails_its_model_naming_the_file_and_the_field(tmp_path):
    folder = tmp_path / "net"
    folder.mkdir()
    (folder / "model.py").write_text(MODEL_CODE)
    marker = tmp_path / "payload-ran"
    (folder / "model.pdparams").write_bytes(pickle.dumps(state_with(shell_writes(marker))))
    with pytest.raises(TaskError) as refused:
        storage.load_model(tmp_path, "net", FIELD)
    assert refused.value.field == FIELD
    message = str(refused.value)
    assert "net/model.pdparams holds something other than weights" in message
    assert "posix.system" in message and "nothing in it ran" in message
    assert not marker.exists()


# ---------------------------------------------------------------- through a real worker job


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_audit_tree(tmp_path_factory.mktemp("weights") / "root")


@pytest.fixture(scope="module")
def worker(tree):
    with served_worker(tree.root) as stub_and_channel:
        yield stub_and_channel


@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "os.system in a dict value", "exec in the name table"])
def test_a_crafted_file_fails_its_attack_in_the_worker_and_nothing_in_it_runs(worker, tree, name):
    stub, channel = worker
    folder = tree.root / "models" / "crafted"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(MODEL_CODE)
    marker = tree.root.parent / "payload-ran"
    make, words = CRAFTED[name]
    (folder / "model.pdparams").write_bytes(make(marker))

    result = list(stub.RunAttack(baseline_request(tree, target_model="models/crafted"), timeout=60))[-1].result
    assert result.status == results_pb2.ATTACK_STATUS_FAILED
    assert result.error.field == "attacks[0].args.target_model"
    assert "models/crafted/model.pdparams holds something other than weights" in result.error.message
    for word in words:
        assert word in result.error.message
    assert not marker.exists()

    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    good = list(stub.RunAttack(baseline_request(tree), timeout=60))[-1].result
    assert good.status == results_pb2.ATTACK_STATUS_SUCCEEDED, good.error
    assert good.target_model.train_acc == 0.75
