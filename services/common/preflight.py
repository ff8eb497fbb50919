"""Every problem with the folders a task names, found before anything starts.

`preflight(spec, storage_root)` checks each folder once, however many fields name it, and
returns all it finds as `Problem`s at the first field naming the folder (the message lists
the others). Nothing heavy loads and no user code runs:

- every folder exists inside the storage root (symlinks resolved, as the worker has it);
- a model folder holds exactly one `.py` that defines `get_model` (read with `ast`), and a
  model whose weights are used (`target_model`) at most one `.pdparams`, which must read as
  a state dict (`attack_worker.weights`: nothing in the file runs);
- a dataset folder holds one `.py` that defines `get_dataset`, or no `.py` and a `data.npz`
  (`x`, `y`, optional `ids`: issue 19's data without code), whose array headers are read;
- data archives a dataset's code reads through a helper module that declares them, as
  example/cifar.py does (`ARCHIVES`: name -> Archive(file, members, label_key), in its
  `DATA` folder): the archive is there, has those members, and each is a batch of uint8
  rows of 3 x 32 x 32 with a label per row, read by an unpickler that builds no object;
- a target's members and non-members are not one folder.

What needs the code run (what `get_model()` builds, whether the weights fit it, the records
themselves) is left to the worker.
"""

from __future__ import annotations

import ast
import difflib
import functools
import os
import pickle
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from privaudit.services.attack_worker.storage import NPZ_NAME, data_without_code, resolve_folder
from privaudit.services.attack_worker.weights import NotWeights, read_state_dict
from privaudit.services.common.errors import Problem, TaskError
from privaudit.services.common.task_spec import TaskSpec

# The one field name that reads a model's trained weights (shadow models train from scratch).
_WEIGHTS_FIELD = "target_model"
CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR_ROW = 3 * 32 * 32
# The most items a statically read `range` may give (a helper's member list is short).
_MAX_STATIC_ITEMS = 10_000
_SAVE_HINT = "paddle.save(model.state_dict(), 'NAME.pdparams')"


@dataclass
class _Use:
    """One folder as the task uses it: the fields naming it, and whether its weights are read."""

    fields: list[str] = field(default_factory=list)
    weights: bool = False


def preflight(spec: TaskSpec, storage_root: str | os.PathLike[str]) -> list[Problem]:
    """Every problem found with the folders `spec` names under `storage_root`, in task order."""
    root = Path(os.path.realpath(storage_root))
    models: dict[str, _Use] = {}
    datasets: dict[str, _Use] = {}
    order: dict[str, int] = {}  # field -> its place in the task
    for index, attack in enumerate(spec.attacks):
        for name, path in attack.storage_paths():
            uses = models if name.endswith(("_model", ".architecture")) else datasets
            use = uses.setdefault(posixpath.normpath(path), _Use())
            use.fields.append(f"attacks[{index}].args.{name}")
            use.weights |= name == _WEIGHTS_FIELD
            order[use.fields[-1]] = len(order)
    problems = []
    for uses, check in ((models, _model_problems), (datasets, _dataset_problems)):
        for path, use in uses.items():
            also = f" (also named at {', '.join(use.fields[1:])})" if len(use.fields) > 1 else ""
            try:
                messages = list(check(root, path, use))
            except OSError as error:  # a folder or file the client may not read (the worker may)
                messages = [f"cannot read {path!r} or a file in it: {error.strerror or error} ({error.filename})"]
            problems += [Problem(use.fields[0], message + also) for message in messages]
    return sorted(problems + _same_pair_problems(spec, root), key=lambda problem: order[problem.field])


# ---------------------------------------------------------------- folders


def _model_problems(root: Path, path: str, use: _Use) -> Iterator[str]:
    folder = yield from _folder(root, path)
    if folder is None:
        return
    code = yield from _only_code(root, folder, "the model code defining get_model()")
    if code is not None:
        yield from _defines(root, code, "get_model")
    if use.weights:
        weights = sorted(p for p in folder.iterdir() if p.name.endswith(".pdparams") and p.is_file())
        if len(weights) > 1:
            yield (f"folder {path!r} holds {len(weights)} .pdparams files ({', '.join(p.name for p in weights)}); "
                   "keep the one with the model's trained weights")
        elif weights:
            yield from _weights(root, weights[0])


def _dataset_problems(root: Path, path: str, use: _Use) -> Iterator[str]:
    folder = yield from _folder(root, path)
    if folder is None:
        return
    npz = data_without_code(folder)
    if npz is not None:
        yield from npz_problems(root, npz)
        return
    code = yield from _only_code(root, folder, f"the dataset code defining get_dataset() (or, without one, a "
                                               f"{NPZ_NAME} holding x and y)")
    if code is not None:
        tree = yield from _defines(root, code, "get_dataset")
        if tree is not None:
            for archive in _archives_read(code, tree):
                yield from archive.problems(root, code)


# A check that yields problems and returns what it found (None after a problem that ends the folder's checks).
_Found = Generator[str, None, Path | None]


def _folder(root: Path, path: str) -> _Found:
    """The folder's real path (the generator's return value), or None after its problem."""
    try:
        return resolve_folder(root, path, "")
    except TaskError as error:
        hint = ""
        if not (root / path).exists():
            hint = f"{_close_match(root, path)}; create it or correct the path (relative to the storage root)"
        yield error.message + hint
        return None


def _close_match(root: Path, path: str) -> str:
    """` (did you mean 'x'?)` for the nearest existing sibling of a missing folder, or nothing."""
    parent = (root / path).parent
    if not parent.is_dir():
        return ""
    siblings = [p.name for p in parent.iterdir() if p.is_dir()]
    close = difflib.get_close_matches(Path(path).name, siblings, n=1)
    return f" (did you mean {posixpath.join(posixpath.dirname(path), close[0])!r}?)" if close else ""


def _only_code(root: Path, folder: Path, role: str) -> _Found:
    """The folder's one `.py` (the generator's return value), or None after its problem."""
    found = sorted(p for p in folder.iterdir() if p.name.endswith(".py") and p.is_file())
    if len(found) != 1:
        got = f"found {len(found)}: {', '.join(p.name for p in found)}" if found else "found none"
        yield f"folder {_shown(root, folder)!r} must hold exactly one .py file, {role}; {got}"
        return None
    outside = _outside(root, found[0])
    if outside:
        yield outside
        return None
    return found[0]


def _outside(root: Path, file: Path) -> str | None:
    """The problem with a file whose symlinks lead out of the storage root, if they do."""
    real = Path(os.path.realpath(file))
    return None if real.is_relative_to(root) else \
        f"{_shown(root, file)!r} leads outside the storage root (to {real}); keep it, and what it links to, inside"


def _defines(root: Path, code: Path, name: str) -> Generator[str, None, ast.Module | None]:
    """The module's syntax tree (the generator's return value) after a problem if it does not
    define `name` at its top level; None after its problem if it is not Python."""
    try:
        tree = ast.parse(code.read_bytes(), filename=str(code))
    except SyntaxError as error:
        yield (f"{_shown(root, code)} is not valid Python (SyntaxError: {error.msg}, line {error.lineno}); the "
               "worker could not import it")
        return None
    except (OSError, ValueError) as error:
        yield f"cannot read {_shown(root, code)}: {error}"
        return None
    if not _may_define(tree.body, name):
        yield (f"{_shown(root, code)} must define {name}(); it has no top-level def, assignment or import of "
               f"that name")
    return tree


def _may_define(body: list[ast.stmt], name: str) -> bool:
    """Whether top-level statements (also under if/try/with) bind `name`; a star import may."""
    for node in body:
        match node:
            case ast.FunctionDef() | ast.AsyncFunctionDef() | ast.ClassDef() if node.name == name:
                return True
            case ast.Import() | ast.ImportFrom():
                if any(alias.name == "*" or (alias.asname or alias.name.split(".")[0]) == name
                       for alias in node.names):
                    return True
            case ast.Assign() | ast.AnnAssign() | ast.AugAssign():
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
                    return True
            case ast.If() | ast.Try() | ast.With():
                handlers = [h.body for h in getattr(node, "handlers", [])]
                branches = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", []), *handlers]
                if any(_may_define(branch, name) for branch in branches):
                    return True
    return False


def _weights(root: Path, weights: Path) -> Iterator[str]:
    shown = _shown(root, weights)
    outside = _outside(root, weights)
    if outside:
        yield outside
        return
    try:
        read_state_dict(weights)
    except NotWeights as error:
        yield (f"{shown} holds something other than weights: {error}. It was not loaded and nothing in it ran; "
               f"give the state dict written by {_SAVE_HINT}")
    except OSError as error:
        yield f"cannot read {shown}: {error.strerror or error}"


# ---------------------------------------------------------------- data without code (issue 19)


def npz_problems(root: Path, path: Path) -> Iterator[str]:
    """Problems with a data.npz's arrays, from their headers: x numeric with a sample array per
    record, y an integer label per record, ids (optional) an id per record."""
    shown = _shown(root, path)
    outside = _outside(root, path)
    if outside:
        yield outside
        return
    try:
        headers = _npz_headers(path)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        yield f"{shown} is not a readable .npz archive ({error}); write it with numpy.savez(path, x=..., y=...)"
        return
    missing = [key for key in ("x", "y") if key not in headers]
    if missing:
        yield (f"{shown} has no {' or '.join(missing)} (it holds {', '.join(sorted(headers)) or 'nothing'}); a "
               "dataset's data.npz holds x (the samples) and y (the labels), and optionally ids")
    wanted = {"x": ("biuf", 2, "numeric, one sample array per record (records x sample shape)"),
              "y": ("iu", 1, "one integer class index per record"),
              "ids": ("biufUS", 1, "one id per record")}
    records = {}
    for key, (kinds, ndim, meaning) in wanted.items():
        if key not in headers:
            continue
        shape, dtype = headers[key]
        if dtype.hasobject:
            yield f"{shown}: {key} holds Python objects, which are never unpickled; save plain arrays"
        elif dtype.kind not in kinds or len(shape) < ndim or (ndim == 1 and len(shape) != 1):
            yield f"{shown}: {key} is {dtype} {list(shape)}; it must be {meaning}"
        else:
            records[key] = shape[0]
    if len(set(records.values())) > 1:
        yield f"{shown}: x, y and ids must have one entry per record; their lengths are {records}"
    elif 0 in records.values():
        yield f"{shown} holds no records"


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype in an .npz, from its .npy header (no data is read)."""
    headers = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                    else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member)
            headers[name.removesuffix(".npy")] = (shape, dtype)
    return headers


# ---------------------------------------------------------------- data archives a dataset's code reads


@dataclass(frozen=True)
class _CifarArchive:
    """A CIFAR python archive a dataset's code reads: the members it reads, every member its
    helper declares for the archive (all checked in one pass, whichever dataset asks first), and
    the label key."""

    path: Path
    members: tuple[str, ...]
    declared: tuple[str, ...]
    label_key: bytes

    def problems(self, root: Path, code: Path) -> Iterator[str]:
        shown, reader = _shown(root, self.path), _shown(root, code)
        if not self.path.is_file():
            yield (f"{shown} is not there, and {reader} reads it: put the CIFAR python archive "
                   f"{self.path.name} there (from {CIFAR_SOURCE}; nothing is downloaded)")
            return
        stat = self.path.stat()
        try:
            faults = _member_faults(self.path, stat.st_size, stat.st_mtime_ns, self.declared, self.label_key)
        except (OSError, tarfile.TarError, EOFError, zlib.error) as error:
            yield f"{shown} (read by {reader}) is not a readable .tar.gz archive ({error}); download it again"
            return
        wrong = [faults[member] for member in self.members if faults[member]]
        if wrong:
            yield (f"{shown} (read by {reader}): {'; '.join(wrong)}; is it the python version of the archive, as "
                   f"published at {CIFAR_SOURCE}?")


@functools.lru_cache(maxsize=8)
def _member_faults(path: Path, size: int, mtime_ns: int, members: tuple[str, ...],
                   label_key: bytes) -> dict[str, str | None]:
    """What is wrong with each of `members` of the archive (None: a CIFAR batch), read in one
    pass in file order (a .tar.gz cannot seek back, so each jump back would read it again).
    `size` and `mtime_ns` key the cache to the file's current contents."""
    faults: dict[str, str | None] = {member: f"it has no member {member}" for member in members}
    with tarfile.open(path, "r|gz") as archive:
        for info in archive:
            if info.name in faults:
                faults[info.name] = _batch_problem(archive, info, label_key)
    return faults


def _batch_problem(archive: tarfile.TarFile, info: tarfile.TarInfo, label_key: bytes) -> str | None:
    """What keeps member `info` from being a CIFAR batch: a pickled dict with `data`, uint8
    (N, 3072), and N labels under `label_key`; None when it is one."""
    file = archive.extractfile(info)
    if file is None:
        return f"its member {info.name} is not a file"
    try:
        batch = _BatchUnpickler(file).load()
    except Exception as error:  # a malformed or hostile pickle can raise almost anything
        return f"its member {info.name} is not a CIFAR batch ({error})"
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(label_key) if isinstance(batch, dict) else None
    if not isinstance(data, _ArrayOutline) or not isinstance(labels, list | _ArrayOutline):
        keys = ", ".join(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        return f"its member {info.name} does not hold data and {label_key.decode()} arrays (it holds {keys})"
    count = len(labels) if isinstance(labels, list) else (labels.shape or (0,))[0]
    if data.dtype != np.uint8 or data.shape != (count, _CIFAR_ROW):
        return f"its member {info.name} holds data {data.dtype} {list(data.shape)}, expected uint8 " \
               f"[{count}, {_CIFAR_ROW}] (one row per label)"
    return None


class _ArrayOutline:
    """What a pickled numpy array's state says it is (shape and dtype), checked against the
    size of its bytes; the array itself is never made."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] = ()
        self.dtype = np.dtype(np.uint8)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError("an array whose pickled state is not numpy's")
        shape, dtype, raw = state[-4], state[-3], state[-1]
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
                and isinstance(dtype, np.dtype) and isinstance(raw, bytes | list)):
            raise ValueError("an array whose pickled state is not numpy's")
        if isinstance(raw, bytes) and len(raw) != int(np.prod(shape, dtype=object)) * dtype.itemsize:
            raise ValueError(f"an array of shape {list(shape)} with {len(raw):,} bytes")
        self.shape, self.dtype = shape, dtype


def _reconstruct(subtype: object, shape: object, placeholder: object) -> _ArrayOutline:
    return _ArrayOutline()


def _dtype(code: object, align: object = False, copy: object = True) -> np.dtype:
    if not isinstance(code, str | bytes):
        raise ValueError(f"a dtype {code!r}")
    code = code.decode("latin1") if isinstance(code, bytes) else code
    if code not in ("u1", "i1", "i2", "i4", "i8", "u2", "u4", "u8", "f4", "f8", "b1"):
        raise ValueError(f"a dtype {code!r}, not a plain numeric one")
    return np.dtype(code)  # a fresh copy: BUILD on it cannot change numpy's shared dtypes


def _latin1_bytes(text: object, encoding: object) -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError(f"_codecs.encode called with {encoding!r}, not as protocol 2 writes bytes")
    return text.encode("latin1")


# The names a pickled numpy array refers to (numpy 1.x and 2.x); nothing else is looked up.
_ARRAY_NAMES: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _ArrayOutline,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_bytes,  # how protocol 2 writes bytes under Python 3
}


class _BatchUnpickler(pickle.Unpickler):
    """Reads a pickled CIFAR batch as plain data: numpy arrays become outlines, and any other
    name the pickle refers to is refused before it is looked up (so nothing in it runs)."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file, encoding="bytes")

    def find_class(self, module: str, name: str) -> object:
        admitted = _ARRAY_NAMES.get((module, name))
        if admitted is None:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR batch never does (loading "
                                         "it would run that)")
        return admitted


def _archives_read(code: Path, tree: ast.Module) -> list[_CifarArchive]:
    """The CIFAR archives a dataset's `.py` reads: calls `<helper>.get_dataset("name", "split")`
    (no other arguments) where helper is a module it loads by path (`spec_from_file_location(_, <path from __file__>)`)
    whose source declares `ARCHIVES` and `DATA` as example/cifar.py does."""
    archives: dict[str, tuple[Path, dict[str, Any]]] = {}
    for call in _calls(tree, "spec_from_file_location"):
        helper = _static_path(call.args[1], code) if len(call.args) == 2 else None
        if helper is not None and helper.is_file():
            archives.update(_declared_archives(helper))
    found = []
    for call in _calls(tree, "get_dataset"):
        if len(call.args) != 2 or call.keywords:  # another folder than the helper's DATA: not known here
            continue
        name, split = map(_literal, call.args)
        if isinstance(name, str) and name in archives and isinstance(split, str):
            data, archive = archives[name]
            splits = archive.get("members")
            members = splits.get(split) if isinstance(splits, dict) else None
            if isinstance(members, tuple) and isinstance(archive.get("file"), str):
                declared = tuple(sorted({m for ms in splits.values() if isinstance(ms, tuple) for m in ms}))
                found.append(_CifarArchive(data / archive["file"], members, declared,
                                           archive.get("label_key", b"labels")))
    return found


def _declared_archives(helper: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """name -> (DATA folder, Archive(...)'s literal keywords) from a helper module's source."""
    try:
        tree = ast.parse(helper.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return {}
    assigned = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    data = _static_path(assigned["DATA"], helper) if "DATA" in assigned else None
    table = assigned.get("ARCHIVES")
    if data is None or not isinstance(table, ast.Dict):
        return {}
    declared = {}
    for key, value in zip(table.keys, table.values, strict=True):
        if isinstance(_literal(key), str) and isinstance(value, ast.Call):
            declared[_literal(key)] = (data, {kw.arg: _literal(kw.value) for kw in value.keywords if kw.arg})
    return declared


def _calls(tree: ast.Module, name: str) -> list[ast.Call]:
    """Every call of a function or method named `name`."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) == name or getattr(node.func, "id", None) == name)]


class _NotStatic(Exception):
    """An expression whose value needs the code run."""


def _literal(node: ast.expr | None) -> Any:
    """The value of an expression made of literals, f-strings and `tuple(... for i in range(a, b))`
    (as example/cifar.py lists its members), or None when it is anything else."""
    try:
        return _value(node, {}) if node is not None else None
    except (_NotStatic, TypeError, ValueError):
        return None


def _value(node: ast.expr, names: dict[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name) if name in names:
            return names[name]
        case ast.Tuple(elts=items):
            return tuple(_value(i, names) for i in items)
        case ast.List(elts=items):
            return [_value(i, names) for i in items]
        case ast.Dict(keys=keys, values=values) if None not in keys:
            return {_value(k, names): _value(v, names) for k, v in zip(keys, values, strict=True)}
        case ast.JoinedStr(values=parts):
            return "".join(_value(p, names) if isinstance(p, ast.Constant) else str(_value(p, names)) for p in parts)
        case ast.FormattedValue(value=inner, conversion=-1, format_spec=None):
            return _value(inner, names)
        case ast.Call(func=ast.Name(id="tuple" | "list" as kind), args=[ast.GeneratorExp(elt=element, generators=[
                ast.comprehension(target=ast.Name(id=variable), iter=ast.Call(func=ast.Name(id="range"), args=bounds),
                                  ifs=[])])], keywords=[]):
            numbers = range(*(_value(b, names) for b in bounds))
            if len(numbers) > _MAX_STATIC_ITEMS:
                raise _NotStatic
            items = [_value(element, {**names, variable: i}) for i in numbers]
            return tuple(items) if kind == "tuple" else items
    raise _NotStatic


def _static_path(node: ast.expr, source: Path) -> Path | None:
    """The path an expression built from `__file__` means (`Path(__file__)`, `.parent`,
    `.parents[n]`, `.resolve()`, `/ "name"`), or None when it is anything else."""
    match node:
        case ast.Name(id="__file__"):
            return source
        case ast.Call(func=ast.Name(id="Path") | ast.Attribute(attr="Path"), args=[argument]):
            return _static_path(argument, source)
        case ast.Call(func=ast.Attribute(attr="resolve", value=inner), args=[]):
            base = _static_path(inner, source)
            return Path(os.path.realpath(base)) if base is not None else None
        case ast.Attribute(attr="parent", value=inner):
            base = _static_path(inner, source)
            return base.parent if base is not None else None
        case ast.Subscript(value=ast.Attribute(attr="parents", value=inner), slice=ast.Constant(value=int(n))):
            base = _static_path(inner, source)
            return base.parents[n] if base is not None and n < len(base.parents) else None
        case ast.BinOp(op=ast.Div(), left=inner, right=ast.Constant(value=str(name))):
            base = _static_path(inner, source)
            return base / name if base is not None else None
    return None


# ---------------------------------------------------------------- pairs


def _same_pair_problems(spec: TaskSpec, root: Path) -> list[Problem]:
    """A target's members and non-members that are one folder (spelt alike or not)."""
    problems = []
    for index, attack in enumerate(spec.attacks):
        pair, field_name = attack.datasets(), f"attacks[{index}].args.{attack.target_pair}"
        members, non_members = (Path(os.path.realpath(root / p)) for p in (pair.members, pair.non_members))
        if members == non_members and members.is_dir():
            problems.append(Problem(f"{field_name}.non_members",
                                    f"{field_name}.members and {field_name}.non_members are the same folder "
                                    f"({pair.members!r}); give the target model's training data and data it "
                                    "never saw"))
    return problems


def _shown(root: Path, path: Path) -> str:
    """`path` as users know it: relative to the storage root (its real location when a symlink
    in between leads elsewhere inside it)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(Path(os.path.realpath(path)).relative_to(root))
