"""Reading a `.pdparams` file as data: nothing in it is ever run.

`paddle.load` unpickles without restriction, so a crafted file runs whatever its
pickle names (`os.system`, `builtins.exec`, ...) in the process that loads it.
`read_state_dict` reads what `paddle.save(model.state_dict(), path)` writes and
nothing else, in two passes over the file:

1. Every opcode is checked before anything is built: only those that pickle
   protocols 2 to 4 use for a dict of strings, numbers, tuples, lists, bytes and
   numpy arrays are admitted (no `INST`/`OBJ`/`NEWOBJ`, extension codes,
   persistent ids or out-of-band buffers), memo indices must grow as a pickler
   writes them, and the file must be one pickle and nothing after it.
2. The unpickler resolves exactly four names, each to a stand-in of ours rather
   than the real object: `numpy.ndarray` (a marker), `numpy._core.multiarray.
   _reconstruct` (also `numpy.core...`, as numpy 1.x wrote it; returns an empty
   array, accepting only the arguments numpy's own pickling gives it), `numpy.dtype`
   (plain numeric types only, always a fresh copy so that unpickling its state
   cannot touch numpy's shared dtypes) and `_codecs.encode` (protocol 2's spelling
   of bytes; Latin-1 only). Any other name is refused before it is looked up.

What comes out must then be a dict of named arrays of a type a Paddle tensor can
hold (bool, int8-64, uint8, uint16 for bfloat16, float16-64, complex64/128), plus
the two entries `paddle.save` adds: `StructuredToParameterName@@` (parameter names,
dropped as `paddle.load` drops them) and `UnpackBigParamInfor@@` (arrays over 1 GiB
split in slices by protocols 2 and 3, joined again here).
"""

from __future__ import annotations

import mmap
import pickle
import pickletools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# paddle.save's own entries besides the arrays (paddle/framework/io.py, io_utils.py).
NAME_TABLE = "StructuredToParameterName@@"
SPLIT_ARRAYS = "UnpackBigParamInfor@@"  # typos: disable-line

# What pickle protocols 2-4 write for dicts, lists, tuples, strings, bytes, ints, bools,
# None and numpy arrays (`numpy.ndarray.__reduce__`: a global, REDUCE, then BUILD).
_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK",
    "EMPTY_DICT", "SETITEM", "SETITEMS", "EMPTY_LIST", "APPEND", "APPENDS",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "MEMOIZE", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8",
    "BININT", "BININT1", "BININT2", "LONG1", "NONE", "NEWTRUE", "NEWFALSE",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
})
_MEMO_WRITES = frozenset({"BINPUT", "LONG_BINPUT"})
# The dtypes a Paddle tensor can be made from (uint16 becomes bfloat16, as in paddle.load).
_DTYPE_CODES = ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "f2", "f4", "f8", "c8", "c16")
_DTYPES = frozenset(np.dtype(code) for code in _DTYPE_CODES)


class NotWeights(ValueError):
    """The file holds something other than a state dict saved by paddle.save; the message says what."""


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the state dict in `path`, by name, read without running anything in the file;
    `NotWeights` when it holds anything else."""
    with path.open("rb") as file:
        if path.stat().st_size == 0:
            raise NotWeights("the file is empty")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as contents:
            _check_opcodes(contents)
            contents.seek(0)
            try:
                loaded = _Unpickler(contents).load()
            except NotWeights:
                raise
            except Exception as exc:  # a malformed pickle can raise almost anything
                raise NotWeights(f"it could not be read as a pickle ({type(exc).__name__}: {exc})") from exc
    return _state_dict(loaded)


# ---------------------------------------------------------------- pass 1: opcodes


def _check_opcodes(contents: mmap.mmap) -> None:
    protocol = contents[1] if len(contents) > 1 and contents[0] == pickle.PROTO[0] else None
    if protocol not in (2, 3, 4):  # paddle.save's protocols
        raise NotWeights(f"it is not a pickle written by paddle.save (it starts with {contents[:8]!r})")
    for count, (op, arg, _) in enumerate(_opcodes(contents)):
        if op.name not in _OPCODES:
            raise NotWeights(f"its pickle uses the {op.name} opcode, which a state dict saved by paddle.save "
                             "never does")
        if op.name in _MEMO_WRITES and arg > count:
            raise NotWeights(f"its pickle writes memo entry {arg} after {count} opcodes")
    if contents.tell() != len(contents):
        raise NotWeights(f"{len(contents) - contents.tell()} bytes follow the pickle; a weights file is one pickle")


def _opcodes(contents: mmap.mmap) -> Iterator[tuple[pickletools.OpcodeInfo, Any, int]]:
    try:
        yield from pickletools.genops(contents)
    except Exception as exc:  # truncated, or not a pickle at all
        raise NotWeights(f"it is not a well-formed pickle ({exc})") from exc


# ---------------------------------------------------------------- pass 2: restricted unpickling


class _StandIn:
    """What a name in the pickle resolves to. Neither it nor its subclasses' instances have a
    `__dict__` or slots, so a BUILD opcode aimed at one fails instead of changing it."""

    __slots__ = ()


class _ArrayType(_StandIn):
    """Stands for `numpy.ndarray`: an argument `_EmptyArray` accepts, not a callable."""

    __slots__ = ()


_ARRAY_TYPE = _ArrayType()


class _EmptyArray(_StandIn):
    """`numpy._core.multiarray._reconstruct` as `ndarray.__reduce__` calls it: an empty array
    that the pickle's BUILD then fills (`ndarray.__setstate__`: shape, dtype, bytes)."""

    __slots__ = ()

    def __call__(self, subtype: object, shape: object, placeholder: object) -> np.ndarray:
        if subtype is not _ARRAY_TYPE or shape != (0,) or placeholder != b"b":
            raise NotWeights("its pickle rebuilds an array in a way numpy's own pickling never does")
        return np.empty(0, dtype=np.int8)


class _Dtype(_StandIn):
    """`numpy.dtype` as `dtype.__reduce__` calls it, for the numeric types of `_DTYPE_CODES`; a
    fresh copy, so that the BUILD that follows never changes numpy's shared dtype objects."""

    __slots__ = ()

    def __call__(self, code: object, align: object, copy: object) -> np.dtype:
        if code not in _DTYPE_CODES or align is not False or copy is not True:
            raise NotWeights(f"its pickle makes numpy dtype {code!r}, which no Paddle tensor has")
        return np.dtype(code, align=False, copy=True)


class _Latin1Bytes(_StandIn):
    """`_codecs.encode` as protocol 2 uses it to write bytes: Latin-1 text back to bytes."""

    __slots__ = ()

    def __call__(self, text: object, encoding: object) -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise NotWeights(f"its pickle calls _codecs.encode with {encoding!r}, not as protocol 2 writes bytes")
        return text.encode("latin1")


_ADMITTED: dict[tuple[str, str], object] = {
    ("numpy", "ndarray"): _ARRAY_TYPE,
    ("numpy._core.multiarray", "_reconstruct"): _EmptyArray(),
    ("numpy.core.multiarray", "_reconstruct"): _EmptyArray(),
    ("numpy", "dtype"): _Dtype(),
    ("_codecs", "encode"): _Latin1Bytes(),
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        admitted = _ADMITTED.get((module, name))
        if admitted is None:
            raise NotWeights(f"it refers to {module}.{name}, which a state dict saved by paddle.save never does "
                             "(a file that does would run it when loaded with paddle.load)")
        return admitted


# ---------------------------------------------------------------- what came out


def _state_dict(loaded: object) -> dict[str, np.ndarray]:
    if not isinstance(loaded, dict):
        raise NotWeights(f"it holds a {type(loaded).__name__}, not a dict of named arrays")
    state = dict(loaded)
    names = state.pop(NAME_TABLE, {})
    if not (isinstance(names, dict) and all(isinstance(v, str) for v in [*names, *names.values()])):
        raise NotWeights(f"its {NAME_TABLE} entry is not a table of parameter names")
    split = state.pop(SPLIT_ARRAYS, {})
    for key, value in state.items():
        if not isinstance(key, str):
            raise NotWeights(f"it has a key of type {type(key).__name__}; a state dict's keys are names")
        if type(value) is not np.ndarray or value.dtype not in _DTYPES:
            what = f"an array of {value.dtype}" if isinstance(value, np.ndarray) else f"a {type(value).__name__}"
            raise NotWeights(f"its entry {key!r} holds {what}, not an array a Paddle tensor can hold")
    return _joined(state, split)


def _joined(state: dict[str, np.ndarray], split: object) -> dict[str, np.ndarray]:
    """`state` with every array that paddle.save split into slices (`split`: name -> OriginShape
    and slice names) joined again, as paddle.load does."""
    if not isinstance(split, dict):
        raise NotWeights(f"its {SPLIT_ARRAYS} entry is a {type(split).__name__}, not a dict")
    for key, info in split.items():
        slices = info.get("slices") if isinstance(info, dict) else None
        shape = info.get("OriginShape") if isinstance(info, dict) else None
        parts = [state.pop(s, None) for s in slices] if isinstance(slices, list) and slices else [None]
        if (not isinstance(key, str) or key in state or any(part is None for part in parts)
                or not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape)):
            raise NotWeights(f"its {SPLIT_ARRAYS} entry for {key!r} does not describe slices it holds")
        if len({part.dtype for part in parts}) != 1 or sum(p.size for p in parts) != np.prod(shape, dtype=object):
            raise NotWeights(f"the slices of {key!r} do not add up to an array of shape {list(shape)}")
        state[key] = np.concatenate([part.reshape(-1) for part in parts]).reshape(shape)
    return state
