"""preflight: every problem with the folders a task names, found at once, before anything runs.

References: the worker's own loaders (services/attack_worker/storage.py) on the bad-input corpus,
example/cifar.py's reader on CIFAR archives, Python itself on what a module defines, and numpy's
np.load on data.npz files. Preflight must find what they refuse and nothing they accept.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_bad_inputs import CASES, storage_root, task_text  # noqa: F401 (storage_root: the corpus's tree)
from worker_fixtures import MODEL_CODE, identity_weights, write_audit_tree, write_model

from privaudit.services.attack_worker import storage
from privaudit.services.common.errors import TaskError
from privaudit.services.common.preflight import preflight
from privaudit.services.common.task_spec import TaskSpec, parse_yaml

REPO = Path(__file__).resolve().parents[1]
GOOD_PAIR = ["datasets/members", "datasets/non_members"]


def task(*attacks: tuple[str, dict]) -> TaskSpec:
    return parse_yaml(yaml.safe_dump([{"type": "MEMBERSHIP_INFERENCE_ATTACK", "name": name, "args": args}
                                      for name, args in attacks]))


def baseline(model: str = "models/net", pair: list[str] = GOOD_PAIR) -> tuple[str, dict]:
    return "BASELINE", {"test_datasets": pair, "target_model": model}


def shadow_attack(name: str = "ML-LEAK", **args: object) -> tuple[str, dict]:
    return name, {"target_datasets": GOOD_PAIR, "target_model": "models/net", "shadow_model": "models/net",
                  "shadow_datasets": GOOD_PAIR, **args}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def by_field(problems: list) -> dict[str, str]:
    fields = [p.field for p in problems]
    assert len(fields) == len(set(fields)), problems
    return {p.field: p.message for p in problems}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A storage root with the worker tests' good model and datasets."""
    write_audit_tree(tmp_path / "root")
    return tmp_path / "root"


class _Runs:
    """Pickles to a call of os.system: what a hostile file holds."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


# ---------------------------------------------------------------- good tasks


def test_good_folders_have_no_problems(root):
    spec = task(baseline(), shadow_attack(), shadow_attack("LABEL-ONLY"),
                ("LOSS", {"target_datasets": GOOD_PAIR, "target_model": "models/net",
                          "population_datasets": ["./datasets/non_members/"]}),
                ("LIRA", {"target_datasets": GOOD_PAIR, "target_model": "models/net", "num_shadow": 2}))
    assert preflight(spec, root) == []


@pytest.mark.parametrize("name", ["mem_inf.yaml", "mem_inf_sota.yaml"])
def test_the_example_tasks_have_no_problems(name):
    assert preflight(parse_yaml((REPO / "example" / "tasks" / name).read_text()), REPO) == []


# ---------------------------------------------------------------- many problems, all listed


def test_every_problem_is_listed_at_once_at_its_field(root, tmp_path):
    models, datasets = root / "models", root / "datasets"
    write(models / "no_py" / "README.txt", "no code here\n")
    for name in ("a.py", "b.py"):
        write(models / "two_py" / name, MODEL_CODE)
    write(models / "syntax" / "model.py", "def get_model(:\n    pass\n")
    write(models / "no_get_model" / "model.py", "def build():\n    return None\n")
    write_model(models / "hostile_weights")
    (models / "hostile_weights" / "model.pdparams").write_bytes(pickle.dumps({"w": _Runs("touch ran")}, protocol=2))
    write_model(models / "two_weights", identity_weights())
    shutil.copy(models / "two_weights" / "model.pdparams", models / "two_weights" / "copy.pdparams")
    write_model(models / "text_weights")
    (models / "text_weights" / "model.pdparams").write_text("not weights")
    write(models / "a_file", "a file, not a folder\n")
    write_model(tmp_path / "outside", code=MODEL_CODE)
    (models / "escape").symlink_to(tmp_path / "outside")
    (models / "linked_code").mkdir()
    (models / "linked_code" / "model.py").symlink_to(tmp_path / "outside" / "model.py")
    (datasets / "linked_npz").mkdir()
    np.savez(tmp_path / "data.npz", x=np.zeros((2, 2)), y=np.arange(2))
    (datasets / "linked_npz" / "data.npz").symlink_to(tmp_path / "data.npz")
    write(datasets / "no_get_dataset" / "dataset.py", "DATA = []\n")
    (datasets / "empty").mkdir()
    spec = task(
        baseline("models/no_py", ["datasets/members", "datasets/no_get_dataset"]),
        shadow_attack(target_model="models/hostile_weights", shadow_model="models/syntax",
                      shadow_datasets=["datasets/empty", "datasets/membrs"]),
        ("LOSS", {"target_datasets": ["datasets/members", "./datasets/members/"], "target_model": "models/two_weights",
                  "population_datasets": ["datasets/non_members", "datasets/nowhere"]}),
        baseline("models/text_weights"),
        shadow_attack("LABEL-ONLY", target_model="models/two_py", shadow_model="models/no_get_model"),
        baseline("models/escape"),
        baseline("models/a_file"),
        baseline("models/linked_code", ["datasets/members", "datasets/linked_npz"]),
    )
    started = time.perf_counter()
    problems = by_field(preflight(spec, root))
    elapsed = time.perf_counter() - started

    expected = {
        "attacks[0].args.target_model": ["models/no_py", "exactly one .py", "found none"],
        "attacks[0].args.test_datasets.non_members": ["datasets/no_get_dataset/dataset.py",
                                                      "must define get_dataset()"],
        "attacks[1].args.target_model": ["models/hostile_weights/model.pdparams", "something other than weights",
                                         "posix.system", "nothing in it ran"],
        "attacks[1].args.shadow_model": ["models/syntax/model.py", "SyntaxError", "line 1"],
        "attacks[1].args.shadow_datasets.members": ["datasets/empty", "exactly one .py", "found none"],
        "attacks[1].args.shadow_datasets.non_members": ["'datasets/membrs' does not exist",
                                                        "did you mean 'datasets/members'?"],
        "attacks[2].args.target_model": ["2 .pdparams files", "copy.pdparams, model.pdparams"],
        "attacks[2].args.population_datasets[1]": ["'datasets/nowhere' does not exist", "create it or correct"],
        "attacks[2].args.target_datasets.non_members": ["same folder"],
        "attacks[3].args.target_model": ["models/text_weights/model.pdparams", "not a pickle written by paddle.save"],
        "attacks[4].args.target_model": ["models/two_py", "exactly one .py", "a.py, b.py"],
        "attacks[4].args.shadow_model": ["models/no_get_model/model.py", "must define get_model()"],
        "attacks[5].args.target_model": ["outside the storage root"],
        "attacks[6].args.target_model": ["'models/a_file' is a file, not a folder"],
        "attacks[7].args.target_model": ["'models/linked_code/model.py' leads outside the storage root"],
        "attacks[7].args.test_datasets.non_members": ["'datasets/linked_npz/data.npz' leads outside the storage"],
    }
    in_the_task = [f"attacks[{i}].args.{name}" for i, attack in enumerate(spec.attacks)
                   for name, _ in attack.storage_paths()]
    assert list(problems) == sorted(expected, key=in_the_task.index), "every problem, in the task's order"
    for field, words in expected.items():
        for word in words:
            assert word in problems[field], (field, problems[field])
    assert not (Path.cwd() / "ran").exists() and not (root / "ran").exists()
    assert elapsed < 1.0


def test_a_folder_named_by_many_fields_is_reported_once_naming_them_all(root):
    spec = task(baseline("models/gone"), shadow_attack(target_model="models/gone", shadow_model="./models/gone"))
    [problem] = preflight(spec, root)
    assert problem.field == "attacks[0].args.target_model"
    assert "also named at attacks[1].args.target_model, attacks[1].args.shadow_model" in problem.message


def test_only_weights_an_attack_reads_are_checked(root):
    """A shadow model trains from scratch: its folder's .pdparams is never read, so it is not judged."""
    write_model(root / "models" / "arch")
    (root / "models" / "arch" / "model.pdparams").write_text("not weights")
    assert preflight(task(shadow_attack(shadow_model="models/arch")), root) == []
    assert [p.field for p in preflight(task(baseline("models/arch")), root)] == ["attacks[0].args.target_model"]


def test_the_problems_make_a_task_error_naming_every_field(root):
    from privaudit.services.common.task_spec import refusal

    problems = preflight(task(baseline("models/x", ["datasets/y", "datasets/z"])), root)
    error = refusal(problems)
    assert isinstance(error, TaskError)
    assert [p.field for p in error.problems] == ["attacks[0].args.test_datasets.members",
                                                  "attacks[0].args.test_datasets.non_members",
                                                  "attacks[0].args.target_model"]


# ---------------------------------------------------------------- the bad-input corpus: as the worker judges


# Corpus cases whose fault is in the folders as they lie (the others need the code run), with
# the words preflight says it in: the corpus's own, or words for a fault the worker never reaches
# (os_exit, killpg_its_own_group: their model.py ends the process on import, before the worker
# could see that it defines no get_model).
FOUND_BEFORE_RUNNING: dict[str, list[str] | None] = {
    **dict.fromkeys(["symlink_out_of_root", "missing_folder", "members_equal_non_members", "model_without_py",
                     "model_with_two_py", "get_model_missing", "weights_that_run_code", "get_dataset_missing",
                     "weights_not_a_pickle", "dataset_code_not_python", "npz_pickled_objects", "npz_lengths_differ",
                     "npz_flat_samples", "npz_missing_y", "npz_not_an_archive"]),
    **{name: [f"models/{folder}/model.py", "must define get_model()"]
       for name, folder in (("os_exit", "os_exit"), ("killpg_its_own_group", "killpg_its_own_group"))},
}


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if not case.get("refused")])
def test_the_corpus_as_the_worker_judges_it(storage_root, name):  # noqa: F811 (the corpus's fixture)
    """Each case preflight can find is found at the worker's field, in the worker's words; the
    others (faults only running the code shows) get no problem: nothing is refused wrongly."""
    case = CASES[name]
    problems = preflight(parse_yaml(task_text(case)), storage_root)
    if name not in FOUND_BEFORE_RUNNING:
        assert problems == []
        return
    [problem] = problems
    assert problem.field == (case["field"] or "attacks[0].args.target_model")
    for word in FOUND_BEFORE_RUNNING[name] or case["words"]:
        assert word in problem.message, problem.message


@pytest.mark.parametrize("name", ["weights_not_a_pickle", "dataset_code_not_python"])
def test_the_new_corpus_cases_are_what_the_worker_says(storage_root, name):  # noqa: F811
    """The cases added with preflight carry the words the worker's loaders use (the corpus's own
    test checks them through a cluster)."""
    case = CASES[name]
    args = yaml.safe_load(task_text(case))[0]["args"]
    with pytest.raises(TaskError) as refused:
        if "test_datasets" in args and args["test_datasets"][1] != "datasets/non_members":
            storage.load_dataset(storage_root, args["test_datasets"][1], "f")
        else:
            storage.load_model(storage_root, args["target_model"], "f")
    for word in case["words"]:
        assert word in refused.value.message


# ---------------------------------------------------------------- what a module defines


# Each binds get_model when run (checked below by running it) or cannot be decided without running it.
DEFINES = [
    "def get_model():\n    return None\n",
    "get_model = lambda: None\n",
    "from helper import get_model\n",
    "from helper import build as get_model\n",
    "from helper import *\n",
    "class get_model:\n    pass\n",
    "get_model: object = None\n",
    "(first, get_model) = (1, 2)\n",
    "try:\n    from missing_module import get_model\nexcept ImportError:\n    def get_model():\n        return None\n",
    "with open(__file__) as f:\n    get_model = f.read\n",
]
UNDECIDED = ["if SOME_FLAG:\n    def get_model():\n        return None\n"]
DOES_NOT_DEFINE = [
    "def get_models():\n    return None\n",
    "class Net:\n    def get_model(self):\n        return None\n",
    "def outer():\n    def get_model():\n        return None\n",
    "# def get_model(): a comment\nNAME = 'get_model'\n",
    "import helper\nhelper.get_model()\n",
]


def _binds_get_model(code: str, path: Path) -> bool:
    """Whether running `code` binds get_model (`helper` is a module that has it)."""
    helper = types.ModuleType("helper")
    helper.get_model = helper.build = lambda: None
    sys.modules["helper"] = helper
    try:
        namespace = {"__file__": str(path), "__name__": "model"}
        exec(compile(code, str(path), "exec"), namespace)
    finally:
        del sys.modules["helper"]
    return "get_model" in namespace


@pytest.mark.parametrize("code", DEFINES + UNDECIDED + DOES_NOT_DEFINE)
def test_get_model_is_found_by_reading_the_code_as_python_would_bind_it(root, code):
    path = write(root / "models" / "m" / "model.py", code)
    problems = preflight(task(baseline("models/m")), root)
    if code in UNDECIDED:
        assert problems == []
        return
    assert _binds_get_model(code, path) == (code in DEFINES)
    assert (problems == []) == (code in DEFINES), problems


# ---------------------------------------------------------------- nothing heavy, nothing run


def test_no_paddle_is_imported_and_no_user_code_runs(root, tmp_path):
    marker = tmp_path / "user-code-ran"
    run_marker = f"open({str(marker)!r}, 'w').close()\n"
    (root / "models" / "net" / "model.py").write_text(run_marker + MODEL_CODE)
    dataset = root / "datasets" / "members" / "dataset.py"
    dataset.write_text(run_marker + dataset.read_text())
    script = textwrap.dedent(f"""
        import sys, time
        started = time.perf_counter()
        from privaudit.services.common.preflight import preflight
        from privaudit.services.common.task_spec import parse_yaml
        spec = parse_yaml(open({str(tmp_path / 'task.yaml')!r}).read())
        problems = preflight(spec, {str(root)!r})
        print(len(problems), "paddle" in sys.modules, round(time.perf_counter() - started, 3))
    """)
    (tmp_path / "task.yaml").write_text(yaml.safe_dump([
        {"type": "MEMBERSHIP_INFERENCE_ATTACK", "name": name, "args": args}
        for name, args in (baseline(), baseline("models/missing"))]))
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    count, paddle_loaded, seconds = out.stdout.split()
    assert (count, paddle_loaded) == ("1", "False"), out
    assert not marker.exists()
    assert float(seconds) < 3.0  # imports included; about 0.6 s on an idle machine


# ---------------------------------------------------------------- CIFAR archives, judged as example/cifar.py reads them


def _cifar_module():
    spec = importlib.util.spec_from_file_location("example_cifar_for_preflight", REPO / "example" / "cifar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Python2Pickler(pickle.Pickler):
    """Pickles dtypes as numpy 1.x under Python 2 did, with 0 and 1 for align and copy (the
    published archives are written so)."""

    def reducer_override(self, obj):
        if isinstance(obj, np.dtype):
            constructor, (code, _, _), state = obj.__reduce__()
            return constructor, (code, 0, 1), state
        return NotImplemented


def _batch(rows: np.ndarray, labels: list[int], python2: bool = False) -> bytes:
    content = {b"batch_label": b"a batch", b"data": rows, b"labels": labels, b"filenames": [b"x.png"] * len(labels)}
    if not python2:
        return pickle.dumps(content, protocol=2)
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(content)
    return buffer.getvalue()


def _write_archive(path: Path, members: dict[str, bytes | None], mode: str = "w:gz") -> None:
    """A tar archive whose members are these bytes (None: a folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            if payload is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))


CIFAR10 = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + ["cifar-10-batches-py/test_batch"]
RNG = np.random.default_rng(3)
ROWS = RNG.integers(0, 256, size=(4, 3072), dtype=np.uint8)


def _members(**changed: bytes | None) -> dict[str, bytes | None]:
    members = {name: _batch(ROWS, [0, 1, 2, 3]) for name in CIFAR10}
    for name, payload in changed.items():
        members[f"cifar-10-batches-py/{name}"] = payload
    return {name: payload for name, payload in members.items() if payload != b"drop"}


# name -> how the archive is written: its members, or the file's bytes
ARCHIVES = {
    "as_published": _members(),
    "python2_dtypes": _members(**{name.rsplit("/")[-1]: _batch(ROWS, [0, 1, 2, 3], python2=True) for name in CIFAR10}),
    "no_test_batch": _members(test_batch=b"drop"),
    "float_data": _members(data_batch_2=_batch(ROWS.astype(np.float32), [0, 1, 2, 3])),
    "short_rows": _members(data_batch_3=_batch(ROWS[:, :3071], [0, 1, 2, 3])),
    "fewer_labels": _members(test_batch=_batch(ROWS, [0, 1, 2])),
    "member_is_a_folder": _members(data_batch_4=None),
    "not_a_dict": _members(data_batch_5=pickle.dumps([1, 2, 3], protocol=2)),
    "no_labels": _members(test_batch=pickle.dumps({b"data": ROWS}, protocol=2)),
    "not_gzip": b"this is not an archive",
    "truncated": b"truncate",
}


def _write_cifar10(folder: Path, name: str) -> Path:
    path = folder / "cifar-10-python.tar.gz"
    content = ARCHIVES[name]
    if isinstance(content, dict):
        _write_archive(path, content)
    elif content == b"truncate":
        _write_archive(path, ARCHIVES["as_published"])
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return path


@pytest.fixture
def example_root(tmp_path: Path) -> Path:
    """A copy of example/ (its code, folders and tasks, no archives) as a storage root."""
    root = tmp_path / "root"
    shutil.copytree(REPO / "example", root / "example", ignore=shutil.ignore_patterns("data", "__pycache__"))
    return root


CIFAR_TASK = [("BASELINE", {"test_datasets": ["example/datasets/cifar10_train", "example/datasets/cifar10_test"],
                            "target_model": "example/models/resnet18_10classes"})]


@pytest.mark.parametrize("name", list(ARCHIVES))
def test_a_cifar_archive_is_refused_exactly_when_the_example_reader_refuses_it(example_root, name):
    path = _write_cifar10(example_root / "example" / "data", name)
    cifar = _cifar_module()
    spec = cifar.ARCHIVES["cifar10"]
    readable = {}
    for split in ("train", "test"):
        try:
            cifar._read(path, spec.members[split], spec.label_key)
            readable[split] = True
        except Exception:
            readable[split] = False
    problems = by_field(preflight(task(*CIFAR_TASK), example_root))
    for split, field in (("train", "members"), ("test", "non_members")):
        found = problems.get(f"attacks[0].args.test_datasets.{field}")
        assert (found is None) == readable[split], (split, found)
        if found:
            assert "example/data/cifar-10-python.tar.gz (read by example/datasets/cifar10_" in found
    assert name in ("as_published", "python2_dtypes") or not all(readable.values())


def test_the_example_cifar_task_names_the_missing_archives(example_root):
    spec = parse_yaml((example_root / "example" / "tasks" / "mem_inf_cifar.yaml").read_text())
    problems = preflight(spec, example_root)
    missing = {p.message.split(" is not there")[0] for p in problems}
    assert missing == {"example/data/cifar-10-python.tar.gz", "example/data/cifar-100-python.tar.gz"}
    assert all("https://www.cs.toronto.edu/~kriz/cifar.html" in p.message for p in problems)
    assert len(problems) == 4  # one per dataset folder: cifar10 and cifar100, train and test


def test_the_example_cifar_task_passes_with_its_archives(example_root):
    _write_cifar10(example_root / "example" / "data", "as_published")
    cifar100 = {name: pickle.dumps({b"data": ROWS, b"fine_labels": [0, 1, 2, 3], b"coarse_labels": [0] * 4},
                                   protocol=2) for name in ("cifar-100-python/train", "cifar-100-python/test")}
    _write_archive(example_root / "example" / "data" / "cifar-100-python.tar.gz", cifar100)
    spec = parse_yaml((example_root / "example" / "tasks" / "mem_inf_cifar.yaml").read_text())
    assert preflight(spec, example_root) == []


def test_a_hostile_cifar_archive_is_refused_without_running_it(example_root, tmp_path):
    marker = tmp_path / "archive-ran"
    hostile = pickle.dumps({b"data": _Runs(f"touch {marker}"), b"labels": [0]}, protocol=2)
    _write_archive(example_root / "example" / "data" / "cifar-10-python.tar.gz",
                   {**_members(), "cifar-10-batches-py/test_batch": hostile})
    problems = by_field(preflight(task(*CIFAR_TASK), example_root))
    assert list(problems) == ["attacks[0].args.test_datasets.non_members"]
    assert "refers to posix.system" in problems["attacks[0].args.test_datasets.non_members"]
    assert not marker.exists()


# ---------------------------------------------------------------- data without code (data.npz, issue 19)


NPZ = {
    "good": {"x": np.zeros((5, 2, 2), np.float32), "y": np.arange(5)},
    "good_with_ids": {"x": np.zeros((5, 3), np.uint8), "y": np.arange(5, dtype=np.uint8), "ids": np.arange(5)},
    "no_y": {"x": np.zeros((5, 3), np.float32)},
    "float_labels": {"x": np.zeros((5, 3), np.float32), "y": np.zeros(5)},
    "labels_2d": {"x": np.zeros((5, 3), np.float32), "y": np.zeros((5, 2), np.int64)},
    "scalar_samples": {"x": np.zeros(5, np.float32), "y": np.arange(5)},
    "string_samples": {"x": np.array([["a"]] * 5), "y": np.arange(5)},
    "lengths_differ": {"x": np.zeros((5, 3), np.float32), "y": np.arange(4)},
    "ids_short": {"x": np.zeros((5, 3), np.float32), "y": np.arange(5), "ids": np.arange(3)},
    "objects": {"x": np.array([np.zeros(3), None], dtype=object), "y": np.arange(2)},
    "empty": {"x": np.zeros((0, 3), np.float32), "y": np.zeros(0, np.int64)},
}


def _npz_acceptable(path: Path) -> bool:
    """The data.npz contract checked on the loaded arrays, with numpy refusing pickled objects."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError:
        return False
    x, y, ids = arrays.get("x"), arrays.get("y"), arrays.get("ids")
    if x is None or y is None or x.ndim < 2 or not np.issubdtype(x.dtype, np.number) or len(x) == 0:
        return False
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(x):
        return False
    return ids is None or (ids.ndim == 1 and len(ids) == len(x))


@pytest.mark.parametrize("name", list(NPZ))
def test_a_data_npz_is_refused_exactly_when_its_arrays_break_the_contract(root, name):
    folder = root / "datasets" / name
    folder.mkdir()
    np.savez(folder / "data.npz", **NPZ[name])
    problems = preflight(task(baseline(pair=["datasets/members", f"datasets/{name}"])), root)
    assert (problems == []) == _npz_acceptable(folder / "data.npz"), problems
    assert all(p.field == "attacks[0].args.test_datasets.non_members" and "data.npz" in p.message
               for p in problems)


def test_a_dataset_py_takes_precedence_over_a_data_npz(root):
    """A folder with both is the seed's kind: its .py may read its own data.npz."""
    np.savez(root / "datasets" / "members" / "data.npz", x=np.zeros(3))
    assert preflight(task(baseline()), root) == []


def test_a_data_npz_that_is_not_a_zip_is_refused(root):
    write(root / "datasets" / "text" / "data.npz", "x,y\n1,2\n")
    [problem] = preflight(task(baseline(pair=["datasets/members", "datasets/text"])), root)
    assert "not a readable .npz archive" in problem.message and "numpy.savez" in problem.message


CIFAR_LOADER = '''
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("example_cifar", {helper})
_cifar = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cifar)


def get_dataset():
    return {call}
'''


@pytest.mark.parametrize(("helper", "call", "found"), [
    ('Path(__file__).parents[2] / "cifar.py"', '_cifar.get_dataset("cifar10", "train")', True),
    ('Path(__file__).resolve().parent.parent.parent / "cifar.py"', '_cifar.get_dataset("cifar100", "test")', True),
    ('Path(__file__).parents[2] / "cifar.py"', '_cifar.get_dataset("cifar10", "train", folder=Path("/data"))', False),
    ('Path(__file__).parents[2] / "cifar.py"', '_cifar.get_dataset(["cifar10"], "train")', False),
    ('Path(__file__).parents[2] / "cifar.py"', '_cifar.get_dataset("imagenet", "train")', False),
    ('Path(__file__).parents[2] / "cifar.py"', '_cifar.get_dataset(NAME, "train")', False),
    ('Path(__file__).parents[9] / "cifar.py"', '_cifar.get_dataset("cifar10", "train")', False),
    ('Path(os.environ["HELPER"])', '_cifar.get_dataset("cifar10", "train")', False),
])
def test_archives_are_found_where_the_code_names_them_plainly(example_root, helper, call, found):
    """What the code names by literals from its own location is checked; anything computed at run
    time is left to the worker, and never breaks the check."""
    write(example_root / "example" / "datasets" / "mine" / "mine.py", CIFAR_LOADER.format(helper=helper, call=call))
    spec = task(baseline("example/models/digits_mlp",
                         ["example/datasets/mine", "example/datasets/digits_target_members"]))
    problems = preflight(spec, example_root)
    assert bool(problems) == found, problems
    assert all("is not there, and example/datasets/mine/mine.py reads it" in p.message for p in problems)
