"""The audit task: parsing the YAML file or the typed message, and validating it.

One set of pydantic models is the single definition of every attack's
arguments, their types, bounds and defaults. YAML text and `privaudit.v1.Task`
messages are both turned into plain dicts and validated by these models, so a
task gets the same errors, naming the same fields (`attacks[1].args.topk`),
whichever way it arrives. `to_proto` writes a validated task back as a message
with every default filled in; that is what the orchestrator sends to workers.
"""

from __future__ import annotations

import difflib
import json
import posixpath
import re
import reprlib
import unicodedata
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from google.protobuf.message import Message
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from privaudit.services.common.errors import InvalidArgument, Problem, TaskError
from privaudit.v1 import task_pb2

YAML_ATTACK_TYPE = "MEMBERSHIP_INFERENCE_ATTACK"
DEFAULT_SEED = 20190224
MAX_ATTACKS = 64
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_SHADOW = 256
MAX_SHADOW_TRAIN_SIZE = 100_000_000
# The largest task any orchestrator takes, YAML text or typed message (its --max-task-bytes may
# only lower it): the orchestrator's default 4 MiB message limit less room for the rest of the
# request. The client refuses a larger task before sending it.
MAX_TASK_BYTES = 4 * 1024 * 1024 - 1024
# A task file nests 4 levels (a list of attacks, each a mapping, args, a dataset pair); YAML
# deeper than this is refused while it is read, before anything recurses over it.
MAX_YAML_DEPTH = 10
# Values in a task file with every alias (*name) expanded: a few hundred bytes of aliases
# could otherwise stand for billions of values.
MAX_YAML_VALUES = 100_000
MAX_PATH_BYTES = 4096  # Linux's PATH_MAX
# A refusal lists problems up to this many bytes: gRPC drops a status whose trailers pass 8 KiB,
# and the message travels about three times (text, and the details' copy, base64'd).
MAX_REPORTED_BYTES = 1500
# What can be an audit id (the orchestrator makes 12 hex digits): anything else is not looked up,
# and never reaches a log line or a report.
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 4
_SHOWN.maxlevel = 2
# Characters a folder path may not hold, by Unicode category: what each is called in the refusal.
_NOT_TEXT = {"Cc": "a control character", "Cf": "an invisible formatting character", "Cs": "a lone UTF-16 surrogate",
             "Zl": "a line separator", "Zp": "a paragraph separator"}


def quoted(value: Any) -> str:
    """`value` as an error message may show what a caller sent: escaped as Python shows it (so
    control characters and surrogates cannot reach a status or a log line), and cut, with its
    full length, when long."""
    shown = _SHOWN.repr(value)
    if isinstance(value, str) and len(value) > _SHOWN.maxstring:
        shown += f" ({len(value):,} characters)"
    return shown


def check_task_id(task_id: str) -> None:
    """Refuses, as InvalidArgument at `task_id`, an id set to anything but TASK_ID (the request's
    sender made it up; unset is left to the caller)."""
    if task_id and not TASK_ID.fullmatch(task_id):
        raise InvalidArgument.at("task_id", f"{quoted(task_id)} is not an audit id (1 to 64 letters, digits, "
                                            "'-' or '_')")


def refusal(problems: list[Problem]) -> TaskError:
    """The TaskError listing `problems` up to MAX_REPORTED_BYTES, and how many more there are (so
    that the status still reaches the caller)."""
    shown, size = [], 0
    for problem in problems:
        size += len(str(problem).encode()) + 2
        if shown and size > MAX_REPORTED_BYTES:
            break
        shown.append(problem)
    if len(shown) < len(problems):
        shown.append(Problem("", f"and {len(problems) - len(shown):,} more problems not shown"))
    return TaskError(shown)


def _storage_path(value: str) -> str:
    """A path relative to the storage root that does not leave it (checked lexically here;
    the worker also checks symlinks against the real files), made of printable text."""
    if not value.strip():
        raise ValueError("must be a folder path relative to the storage root, got an empty string")
    for position, character in enumerate(value, start=1):
        what = _NOT_TEXT.get(unicodedata.category(character))
        if what:
            raise ValueError(f"{quoted(value)} holds {what} (U+{ord(character):04X}) at character {position}; "
                             "a folder path must be printable text")
    size = len(value.encode())
    if size > MAX_PATH_BYTES:
        raise ValueError(f"{quoted(value)} is {size:,} bytes long; at most {MAX_PATH_BYTES:,}")
    if posixpath.isabs(value) or value.startswith("\\") or (len(value) > 1 and value[1] == ":"):
        raise ValueError(f"{quoted(value)} is absolute; paths are relative to the storage root")
    normal = posixpath.normpath(value)
    if normal == ".." or normal.startswith("../"):
        raise ValueError(f"{quoted(value)} leaves the storage root")
    return value


StoragePath = Annotated[str, AfterValidator(_storage_path)]
# host:port, the host a DNS name, an IPv4 address or an IPv6 address in brackets.
_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]):(?P<port>[0-9]{1,5})")
# Model names and versions as the Open Inference Protocol servers name them (KServe, Triton).
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")


def _pair_from_list(value: Any) -> Any:
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(f"must be a list of two dataset folders [members, non_members], got {len(value)}")
        return {"members": value[0], "non_members": value[1]}
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class ModelEndpoint(_Strict):
    """A deployed model that the worker queries over the Open Inference Protocol v2 (gRPC), as
    KServe and Triton serve it. What `output` says the model returns decides which attacks can run:
    logits or probabilities, every one; labels, BASELINE and LABEL-ONLY alone."""

    endpoint: str
    model: str
    version: str = ""
    tls_ca: StoragePath | None = None
    token_file: StoragePath | None = None
    output: Literal["logits", "probabilities", "labels"] = "logits"
    output_name: str = ""
    max_queries: int | None = Field(None, ge=1, lt=2**63)
    deadline_s: float = Field(30.0, gt=0, le=3600)
    architecture: StoragePath | None = None

    @field_validator("endpoint")
    @classmethod
    def _host_port(cls, value: str) -> str:
        match = _HOST_PORT.fullmatch(value)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ValueError(f"must be host:port of the model server's gRPC listener (e.g. models.internal:8081), "
                             f"got {quoted(value)}")
        return value

    @field_validator("model", "version", "output_name")
    @classmethod
    def _name(cls, value: str, info: ValidationInfo) -> str:
        if (value or info.field_name == "model") and not _MODEL_NAME.fullmatch(value):
            raise ValueError(f"must be a model server's name for it (letters, digits, '_', '.', '-'), "
                             f"got {quoted(value)}")
        return value

    def architecture_folder(self, field: str) -> str:
        """`architecture`, which training shadow models needs (TaskError at `field`.architecture without it)."""
        if self.architecture is None:
            raise TaskError.at(f"{field}.architecture", "a deployed target gives no architecture to train shadow "
                                                        "models from: name a folder whose .py defines get_model() "
                                                        "for it")
        return self.architecture

    def __str__(self) -> str:
        """How reports and messages name it: host:port/model, and /version when one is set."""
        return f"{self.endpoint}/{self.model}" + (f"/{self.version}" if self.version else "")


def _target_kind(value: Any) -> str:
    return _ENDPOINT_TAG if isinstance(value, dict | ModelEndpoint) else _FOLDER_TAG


# A target given as a mapping is an endpoint, anything else a folder: errors name one form's fields,
# never both (the tags, which pydantic puts in an error's location, are dropped from field names).
_FOLDER_TAG, _ENDPOINT_TAG = "<folder>", "<endpoint>"
TargetModel = Annotated[Annotated[str, AfterValidator(_storage_path), Tag(_FOLDER_TAG)]
                        | Annotated[ModelEndpoint, Tag(_ENDPOINT_TAG)], Discriminator(_target_kind)]


class DatasetPair(_Strict):
    """`[members, non_members]`: two dataset folders."""

    members: StoragePath
    non_members: StoragePath


DatasetPairField = Annotated[DatasetPair, BeforeValidator(_pair_from_list)]


class AttackArgs(_Strict):
    """Base of the per-attack argument models. `name` is the YAML name; `proto_field` the
    `AttackSpec.args` case; `target_pair` names the field holding the audited datasets."""

    name: ClassVar[str]
    proto_field: ClassVar[str]
    proto_type: ClassVar[type[Message]]
    target_pair: ClassVar[str] = "target_datasets"

    def datasets(self) -> DatasetPair:
        """The target model's member and non-member datasets."""
        return getattr(self, self.target_pair)

    def storage_paths(self) -> list[tuple[str, str]]:
        """Every (field, folder) the attack reads, e.g. ("target_datasets.members", "./data/in")."""
        paths: list[tuple[str, str]] = []
        for field in type(self).model_fields:
            value = getattr(self, field)
            if isinstance(value, DatasetPair):
                paths += [(f"{field}.members", value.members), (f"{field}.non_members", value.non_members)]
            elif field == "population_datasets":
                paths += [(f"{field}[{i}]", path) for i, path in enumerate(value)]
            elif isinstance(value, ModelEndpoint):
                if value.architecture is not None:
                    paths.append((f"{field}.architecture", value.architecture))
            elif field.endswith("_model"):
                paths.append((field, value))
        return paths

    def target_architecture(self) -> tuple[str, str]:
        """(field, folder) of the target model's architecture: its own folder, or a deployed target's
        `architecture` (TaskError when it has none)."""
        target = self.target_model  # type: ignore[attr-defined]  # (every attack has one)
        if isinstance(target, ModelEndpoint):
            return "target_model.architecture", target.architecture_folder("target_model")
        return "target_model", target


class BaselineArgs(AttackArgs):
    """Calls a record a member when the target model labels it correctly."""

    name: ClassVar[str] = "BASELINE"
    proto_field: ClassVar[str] = "baseline"
    proto_type: ClassVar[type[Message]] = task_pb2.BaselineArgs

    # The seed's name for the audited pair, or the one every other attack uses: exactly one of them.
    test_datasets: DatasetPairField | None = None
    target_datasets: DatasetPairField | None = Field(None, validate_default=True)
    target_model: TargetModel

    @property
    def target_pair(self) -> str:  # type: ignore[override]  # the name the task used
        return "target_datasets" if self.test_datasets is None else "test_datasets"

    @field_validator("target_datasets")
    @classmethod
    def _one_pair(cls, value: DatasetPair | None, info: ValidationInfo) -> DatasetPair | None:
        if "test_datasets" not in info.data:  # given, and refused on its own
            return value
        if value is None and info.data["test_datasets"] is None:
            raise ValueError("required by BASELINE and missing: [members, non_members] (test_datasets, the "
                             "seed's name for it, is accepted too)")
        if value is not None and info.data["test_datasets"] is not None:
            raise ValueError("give the datasets as target_datasets or as test_datasets, not both")
        return value


class ShadowAttackArgs(AttackArgs):
    """Arguments of the attacks that train a shadow model and an attack classifier."""

    target_datasets: DatasetPairField
    target_model: TargetModel
    shadow_model: StoragePath
    shadow_datasets: DatasetPairField
    shadow_epoch: int = Field(10, ge=1, le=MAX_EPOCHS)
    shadow_lr: float = Field(0.001, gt=0, le=10)
    classifier_epoch: int = Field(50, ge=1, le=MAX_EPOCHS)
    classifier_lr: float = Field(0.001, gt=0, le=10)
    batch_size: int = Field(128, ge=1, le=MAX_BATCH_SIZE)


class MlLeakArgs(ShadowAttackArgs):
    """Learns membership from a shadow model's top-k sorted confidence scores (Salem et al., 2019)."""

    name: ClassVar[str] = "ML-LEAK"
    proto_field: ClassVar[str] = "ml_leak"
    proto_type: ClassVar[type[Message]] = task_pb2.MlLeakArgs

    topk: int = Field(3, ge=1, le=100_000)


class LabelOnlyArgs(ShadowAttackArgs):
    """Learns membership from which rotated or shifted copies of a record the model still labels
    correctly (Choquette-Choo et al., 2021)."""

    name: ClassVar[str] = "LABEL-ONLY"
    proto_field: ClassVar[str] = "label_only"
    proto_type: ClassVar[type[Message]] = task_pb2.LabelOnlyArgs

    attack_type: Literal["r", "d"] = "r"
    r: int = Field(6, ge=0, le=180)
    d: int = Field(1, ge=0, le=64)


class LossArgs(AttackArgs):
    """Scores a record by the target model's loss on it: the lower, the likelier a member (Yeom et al., 2018)."""

    name: ClassVar[str] = "LOSS"
    proto_field: ClassVar[str] = "loss"
    proto_type: ClassVar[type[Message]] = task_pb2.LossArgs

    target_datasets: DatasetPairField
    target_model: TargetModel
    population_datasets: tuple[StoragePath, ...] = ()
    batch_size: int = Field(128, ge=1, le=MAX_BATCH_SIZE)

    @model_validator(mode="before")
    @classmethod
    def _population_as_tuple(cls, data: Any) -> Any:
        return _population_tuple(data)


class ShadowModelArgs(AttackArgs):
    """Arguments of the attacks that train many shadow (reference) models of the target's
    architecture, one job each (LIRA, RMIA). `shadow_parts` says they split that way. Offline,
    the models train on population data only, so offline needs population_datasets."""

    shadow_parts: ClassVar[bool] = True

    target_datasets: DatasetPairField
    target_model: TargetModel
    online: bool = True
    population_datasets: tuple[StoragePath, ...] = Field((), validate_default=True)
    shadow_train_size: int | None = Field(None, ge=1, le=MAX_SHADOW_TRAIN_SIZE)
    epochs: int = Field(20, ge=1, le=MAX_EPOCHS)
    lr: float = Field(0.001, gt=0, le=10)
    batch_size: int = Field(128, ge=1, le=MAX_BATCH_SIZE)
    seed: int | None = Field(None, ge=0, lt=2**63)

    @model_validator(mode="before")
    @classmethod
    def _population_as_tuple(cls, data: Any) -> Any:
        return _population_tuple(data)

    @field_validator("population_datasets")
    @classmethod
    def _offline_needs_population(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.data.get("online") is False and not value:
            raise ValueError(f"offline {cls.name} trains its models on population data only (never on an audited "
                             "record): list population_datasets (data from the target's distribution that it did "
                             "not train on), or set online: true")
        return value


def _population_tuple(data: Any) -> Any:
    """YAML and proto give population_datasets as a list; the frozen models hold a tuple."""
    if isinstance(data, dict) and isinstance(data.get("population_datasets"), list):
        data = {**data, "population_datasets": tuple(data["population_datasets"])}
    return data


class LiraArgs(ShadowModelArgs):
    """Likelihood-ratio test of the target's confidence against Gaussians fitted over shadow models
    trained with and without each record (Carlini et al., 2022)."""

    name: ClassVar[str] = "LIRA"
    proto_field: ClassVar[str] = "lira"
    proto_type: ClassVar[type[Message]] = task_pb2.LiraArgs

    num_shadow: int = Field(16, ge=2, le=MAX_SHADOW, multiple_of=2)
    fixed_variance: bool | None = None
    augment: bool = False


class RmiaArgs(ShadowModelArgs):
    """Compares each record's likelihood ratio with population samples', normalised by reference
    models (Zarifzadeh, Liu and Shokri, 2024)."""

    name: ClassVar[str] = "RMIA"
    proto_field: ClassVar[str] = "rmia"
    proto_type: ClassVar[type[Message]] = task_pb2.RmiaArgs

    online: bool = False
    population_datasets: tuple[StoragePath, ...] = Field(min_length=1)
    num_shadow: int = Field(4, ge=2, le=MAX_SHADOW)
    a: float | None = Field(None, ge=0, le=1)
    gamma: float = Field(1.0, gt=0)
    num_population: int = Field(1000, ge=1, le=1_000_000)

    @field_validator("num_shadow")
    @classmethod
    def _online_needs_pairs(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("online") and value % 2:
            raise ValueError(f"online RMIA needs an even number of reference models, got {value}")
        return value


ATTACKS: dict[str, type[AttackArgs]] = {
    cls.name: cls for cls in (BaselineArgs, MlLeakArgs, LabelOnlyArgs, LossArgs, LiraArgs, RmiaArgs)
}
_BY_PROTO_FIELD = {cls.proto_field: cls for cls in ATTACKS.values()}
_AUGMENTATIONS = {"r": task_pb2.AUGMENTATION_ROTATION, "d": task_pb2.AUGMENTATION_TRANSLATION}


# What each argument means; one entry per YAML key, whichever attacks take it.
ARGUMENT_HELP = {
    "test_datasets": "[members, non_members]: the target model's training data and data it never saw (BASELINE "
                     "only: the seed's name for target_datasets; give one of the two)",
    "target_datasets": "[members, non_members]: the target model's training data and data it never saw",
    "target_model": "folder with the audited model's .py (get_model()) and .pdparams, or the model where it is "
                    "deployed, queried over the Open Inference Protocol v2 (gRPC): {endpoint: host:port, model: NAME, "
                    "version, tls_ca: FILE, token_file: FILE, output: logits|probabilities|labels, output_name, "
                    "max_queries: N, deadline_s: 30, architecture: FOLDER (for LIRA and RMIA's shadow models)}",
    "shadow_model": "folder whose .py gives the shadow model's architecture; trained from scratch",
    "shadow_datasets": "[members, non_members]: the shadow model's training set and a disjoint held-out set",
    "shadow_epoch": "training epochs of the shadow model (>= 1)",
    "shadow_lr": "Adam learning rate of the shadow model (> 0)",
    "classifier_epoch": "training epochs of the attack classifier (>= 1)",
    "classifier_lr": "Adam learning rate of the attack classifier (> 0)",
    "batch_size": "records per batch for training and prediction (>= 1)",
    "topk": "how many of the largest posteriors form the attack's feature (1 to the number of classes)",
    "attack_type": "r: rotate by every whole degree in [-r, r]; d: the record and every shift (dx, dy) with "
                   "|dx|+|dy| = d",
    "r": "largest rotation in degrees, with attack_type r (0 to 180; 0 = the record itself only)",
    "d": "shift in pixels (L1), with attack_type d (0 to 64; 0 = the record itself only)",
    "population_datasets": "folders of auxiliary data from the target's distribution",
    "shadow_train_size": "records each shadow (reference) model trains on; unset: as many as the target's members",
    "num_shadow": "shadow (reference) models to train, one job each",
    "online": "online: each audited record is in half of the models; offline: in none, which then train on "
              "population_datasets alone",
    "epochs": "training epochs of each shadow model (>= 1)",
    "lr": "Adam learning rate of the shadow models (> 0)",
    "seed": "this attack's seed instead of the task's",
    "fixed_variance": "one variance for all records; unset: on when num_shadow < 64",
    "augment": "average over the record and its left-right mirror image, as Carlini et al. query",
    "a": "offline approximation of Pr(x) from OUT models: ((1 + a) Pr(x|OUT) + (1 - a)) / 2 (0 to 1); "
         "unset: chosen on the reference models, attacking each with the others",
    "gamma": "likelihood-ratio threshold a pair (x, z) must reach (> 0)",
    "num_population": "population samples z to compare each record with (>= 1)",
}


class TaskSpec(BaseModel):
    """A validated task: the attacks in order and the seed."""

    model_config = ConfigDict(frozen=True)

    attacks: tuple[AttackArgs, ...]
    seed: int = DEFAULT_SEED


# ---------------------------------------------------------------- parsing


def read_task_file(path: Path) -> str:
    """The text of a task file: at most MAX_TASK_BYTES (more is not read) of UTF-8. Raises
    TaskError for a file too large or not UTF-8, OSError for one that cannot be read."""
    with path.open("rb") as file:
        data = file.read(MAX_TASK_BYTES + 1)
    if len(data) > MAX_TASK_BYTES:
        raise TaskError.at("", f"the task file {str(path)!r} is more than {MAX_TASK_BYTES:,} bytes, the most a "
                               "task may be")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TaskError.at("", f"the task file {str(path)!r} is not UTF-8 text: byte 0x{data[error.start]:02x} at "
                               f"offset {error.start}") from None


def parse_yaml(text: str, seed: int | None = None) -> TaskSpec:
    """Parses the task file's text (a YAML list of attacks, as the seed writes it)."""
    try:
        document = yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader: builds plain data only
    except _Unbounded as exc:
        raise TaskError.at("", f"the task file {exc.problem} at line {exc.mark.line + 1}, column "
                               f"{exc.mark.column + 1}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise TaskError.at("", f"the task file is not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if isinstance(document, dict):
        raise TaskError.at(
            "", "the task file must be a YAML list of attacks ('- type: ...'), not a mapping; "
            "start each attack with '- '"
        )
    if not isinstance(document, list):
        raise TaskError.at("", f"the task file must be a YAML list of attacks, got {_kind(document)}")
    return _validate_entries(document, seed)


def from_proto(task: task_pb2.Task, seed: int | None = None) -> TaskSpec:
    """Validates a typed task message with the same rules as the YAML file."""
    entries = []
    for spec in task.attacks:
        case = spec.WhichOneof("args")
        entries.append(
            {
                "type": YAML_ATTACK_TYPE if spec.type == task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE
                else _enum_name(task_pb2.AttackType, spec.type),
                "name": _BY_PROTO_FIELD[case].name if case else None,
                "args": _message_to_dict(getattr(spec, case)) if case else {},
            }
        )
    return _validate_entries(entries, seed if seed is not None else (task.seed if task.HasField("seed") else None))


def attack_from_proto(spec: task_pb2.AttackSpec, field: str = "attack") -> AttackArgs:
    """Validates one attack of a job (what a worker receives)."""
    case = spec.WhichOneof("args")
    if spec.type != task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE or case is None:
        raise TaskError.at(field, "must be a membership-inference attack with its args set")
    try:
        return _validate_args(_BY_PROTO_FIELD[case], _message_to_dict(getattr(spec, case)), f"{field}.args")
    except TaskError as error:
        raise refusal(error.problems) from None


def to_proto(spec: TaskSpec) -> task_pb2.Task:
    """The validated task as a message, every default filled in."""
    return task_pb2.Task(attacks=[attack_to_proto(a) for a in spec.attacks], seed=spec.seed)


def attack_to_proto(args: AttackArgs) -> task_pb2.AttackSpec:
    fields: dict[str, Any] = {}
    for key, value in args.model_dump(exclude_none=True).items():
        if isinstance(getattr(args, key), ModelEndpoint):
            key, value = "target_endpoint", task_pb2.ModelEndpoint(**value)
        elif isinstance(value, dict):
            value = task_pb2.DatasetPair(**value)
        elif key == "attack_type":
            value = _AUGMENTATIONS[value]
        fields[key] = value
    return task_pb2.AttackSpec(
        type=task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE, **{args.proto_field: args.proto_type(**fields)}
    )


def describe_attacks() -> list[dict[str, Any]]:
    """Every attack with its arguments: name, type, required, default (JSON) and meaning."""
    described = []
    for name, model in ATTACKS.items():
        arguments = []
        for argument, info in model.model_fields.items():
            arguments.append({
                "name": argument,
                "type": _type_name(info.annotation),
                "required": info.is_required(),
                "default": "" if info.is_required() else json.dumps(info.get_default(call_default_factory=True)),
                "description": ARGUMENT_HELP[argument],
            })
        described.append({"name": name, "description": " ".join((model.__doc__ or "").split()),
                          "arguments": arguments})
    return described


def _type_name(annotation: Any) -> str:
    text = str(annotation)
    for pattern, shown in (("ModelEndpoint", "folder or {endpoint: ...}"), ("DatasetPair", "[members, non_members]"),
                           ("tuple", "[folder, ...]"),
                           ("Literal", "'r' or 'd'"), ("bool", "bool"), ("int", "int"), ("float", "float")):
        if pattern in text:
            return shown + (" or null" if "None" in text and shown in ("bool", "int") else "")
    return "folder"


# ---------------------------------------------------------------- internals


class _Unbounded(Exception):
    """A task file past MAX_YAML_DEPTH or MAX_YAML_VALUES; `mark` is where."""

    def __init__(self, problem: str, mark: yaml.Mark):
        super().__init__(problem)
        self.problem, self.mark = problem, mark


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that stops, as it reads, at a document nested deeper than MAX_YAML_DEPTH or
    holding more than MAX_YAML_VALUES values with every alias expanded. PyYAML composes
    recursively, so the depth is checked before each level is entered."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._values = 0  # values composed so far, an alias counted as the values it stands for
        self._sizes: dict[int, int] = {}  # id(anchored node) -> values it stands for, once complete

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            if node is not None:  # (an undefined alias is PyYAML's to refuse)
                if id(node) not in self._sizes:
                    raise _Unbounded(f"has an alias (*{event.anchor}) that refers to the value that holds it",
                                     event.start_mark)
                self._count(self._sizes[id(node)], event.start_mark)
            return super().compose_node(parent, index)
        collection = isinstance(event, yaml.CollectionStartEvent)
        if collection and self._depth == MAX_YAML_DEPTH:
            raise _Unbounded(f"nests deeper than {MAX_YAML_DEPTH} levels (a task needs 4)", event.start_mark)
        before = self._values
        self._count(1, event.start_mark)
        self._depth += collection
        node = super().compose_node(parent, index)
        self._depth -= collection
        if event.anchor is not None:
            self._sizes[id(node)] = self._values - before
        return node

    def _count(self, values: int, mark: yaml.Mark) -> None:
        self._values += values
        if self._values > MAX_YAML_VALUES:
            raise _Unbounded(f"holds more than {MAX_YAML_VALUES:,} values (aliases expanded)", mark)


def _validate_entries(entries: list[Any], seed: int | None) -> TaskSpec:
    if not entries:
        raise TaskError.at("attacks", "the task has no attacks; list at least one")
    if len(entries) > MAX_ATTACKS:
        raise TaskError.at("attacks", f"the task has {len(entries)} attacks; at most {MAX_ATTACKS} are allowed")
    if seed is not None and not 0 <= seed < 2**63:
        raise TaskError.at("seed", f"must be between 0 and 2^63 - 1, got {seed}")
    attacks, problems = [], []
    for index, entry in enumerate(entries):
        try:
            attacks.append(_validate_entry(entry, f"attacks[{index}]"))
        except TaskError as exc:
            problems += exc.problems
    if problems:
        raise refusal(problems)
    return TaskSpec(attacks=tuple(attacks), seed=DEFAULT_SEED if seed is None else seed)


def _validate_entry(entry: Any, field: str) -> AttackArgs:
    if not isinstance(entry, dict):
        raise TaskError.at(field, f"each attack must be a mapping with type, name and args, got {_kind(entry)}")
    unknown = sorted(set(map(_field_part, entry)) - {"type", "name", "args"})
    if unknown:
        raise TaskError.at(f"{field}.{unknown[0]}", "unknown key; an attack has only type, name and args")
    if entry.get("type") != YAML_ATTACK_TYPE:
        raise TaskError.at(f"{field}.type", f"must be {YAML_ATTACK_TYPE}, got {quoted(entry.get('type'))}")
    name = entry.get("name")
    if not isinstance(name, str) or name not in ATTACKS:
        raise TaskError.at(f"{field}.name", f"unknown attack {quoted(name)}{_suggest(name, ATTACKS)}; "
                           f"known attacks: {', '.join(ATTACKS)}")
    args = entry.get("args")
    if not isinstance(args, dict):
        raise TaskError.at(f"{field}.args", f"must be a mapping of the attack's arguments, got {_kind(args)}")
    return _validate_args(ATTACKS[name], args, f"{field}.args")


def _validate_args(model: type[AttackArgs], args: dict[str, Any], field: str) -> AttackArgs:
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise TaskError([_problem(model, error, field) for error in exc.errors()]) from None


def _problem(model: type[AttackArgs], error: Any, field: str) -> Problem:
    loc = [_field_part(part) for part in error["loc"] if part not in (_FOLDER_TAG, _ENDPOINT_TAG)]
    path = ".".join([field, *loc])
    kind, message = error["type"], error["msg"]
    owner, takes = (("a deployed target", ModelEndpoint.model_fields) if _ENDPOINT_TAG in error["loc"]
                    else (model.name, model.model_fields))
    if kind == "extra_forbidden" and loc == ["target_endpoint"]:
        message = "target_model and target_endpoint are both set; give one"
    elif kind == "extra_forbidden":
        message = f"unknown argument{_suggest(loc[-1], takes)}; {owner} takes: " + ", ".join(takes)
    elif kind == "missing":
        message = f"required by {owner} and missing"
    elif kind.startswith("value_error"):
        message = message.removeprefix("Value error, ")
    elif "input" in error and kind != "missing":
        message = f"{message} (got {quoted(error['input'])})"
    return Problem(path, message)


def _field_part(key: Any) -> str:
    """A key as part of a field's name: as written when it is short printable text, else quoted."""
    return str(key) if isinstance(key, str | int) and str(key).isprintable() and len(str(key)) <= 40 \
        else quoted(key)


def _suggest(word: Any, choices: Any) -> str:
    if not isinstance(word, str) or len(word) > 40:
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__}"


def _enum_name(enum: Any, value: int) -> str:
    """The enum value's name, or a description of a number the proto does not define (so that
    validation refuses it naming the field rather than failing here)."""
    try:
        return enum.Name(value)
    except ValueError:
        return f"<undefined value {value}>"


def _message_to_dict(message: Message) -> dict[str, Any]:
    """The set fields of an args message, in the shapes the YAML file uses."""
    out: dict[str, Any] = {}
    for descriptor, value in message.ListFields():
        name = descriptor.name
        if descriptor.is_repeated:
            value = list(value)
        elif isinstance(value, task_pb2.DatasetPair):
            value = [value.members, value.non_members]
        elif isinstance(value, task_pb2.ModelEndpoint):  # the YAML's target_model: {endpoint: ...}
            # (beside a target_model folder it keeps its name, which validation then refuses)
            name, value = "target_endpoint" if "target_model" in out else "target_model", _message_to_dict(value)
        elif name == "attack_type":
            value = {v: k for k, v in _AUGMENTATIONS.items()}.get(value) or _enum_name(task_pb2.Augmentation, value)
        out[name] = value
    return out
