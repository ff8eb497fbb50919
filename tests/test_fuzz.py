"""Fuzzing every RPC of every service (hypothesis), through real service processes with tokens on.

The RPCs are read from the protos' service descriptors, and each must have a request strategy in
REQUESTS: a new RPC without one fails `test_random_requests`. Requests are drawn field by field
from the descriptors (undefined enum values and unknown fields included); strings partly from real
folders of the storage root and real audit ids, and shadow outputs and attack results partly by
mutating real ones, so that many requests get past validation and run. Every RPC also gets raw
bytes (mostly undecodable, some nested deeper than any parser allows), every shape of
`authorization` metadata, and messages just under and over its service's size limit.

Every reply must be a success or a deliberate status: never UNKNOWN, never INTERNAL (an INTERNAL
carrying an incident id means our code raised unexpectedly: a bug), never silence until the
caller's deadline, and a status that privaudit's servicers send carries the error model's
ErrorInfo. The service must answer its health checks afterwards, and no service's log may hold a
traceback (an exception nobody expected, in a job's child process too). Examples are derandomized
and counted, so the module runs the same way every time.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import pkgutil
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
import yaml
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_processes import ServiceProcesses
from worker_fixtures import NUM_CLASSES, records, write_audit_tree, write_dataset

import privaudit.v1
from privaudit.services.common import task_spec
from privaudit.services.common.channels import CHANNEL_OPTIONS
from privaudit.services.common.errors import ERROR_DOMAIN
from privaudit.v1 import attack_worker_pb2, orchestrator_pb2, report_pb2, reporter_pb2, results_pb2, task_pb2

pytestmark = pytest.mark.e2e

CLIENT_TOKEN, INTERNAL_TOKEN = "fuzz-client-token-1", "fuzz-internal-token-1"
# The process that serves each service (a `services.<name>` module), and the token it takes.
SERVED_BY = {"privaudit.v1.OrchestratorService": ("orchestrator", CLIENT_TOKEN),
             "privaudit.v1.AttackWorkerService": ("attack_worker", INTERNAL_TOKEN),
             "privaudit.v1.ReporterService": ("reporter", INTERNAL_TOKEN)}
# Each process's receive limit: the orchestrator's default, the workers' and reporter's.
RECEIVE_LIMIT = {"orchestrator": 4 * 1024 * 1024, "attack_worker": 64 * 1024 * 1024, "reporter": 64 * 1024 * 1024}
CALL_TIMEOUT = 30.0
AUDIT_TIME_S = 2.0  # an accepted audit runs this long before it is cancelled
SEED = 3  # of the jobs whose shadow outputs are mutated (the outputs' training masks follow from it)
STREAM_LIMIT = 200  # messages read from one stream before it is cancelled
RAW_EXAMPLES = 25  # per RPC
METADATA_EXAMPLES = 20  # per RPC
# Share of an RPC's requests that must get past validation. About a fifth do; which ones varies
# from run to run (the ids drawn from include those accepted so far), down to 15% on a busy machine.
DEEP_SHARE = 0.1

# Codes a service may answer with on purpose. UNKNOWN and INTERNAL mean it broke.
BROKEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
# Deliberate statuses that come without privaudit's ErrorInfo: gRPC's message size limit, the token
# check (it answers before any servicer, saying only what a caller may know), a cancelled stream.
GRPC_OWN = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.CANCELLED}


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------- every RPC, from the descriptors


def every_rpc() -> dict[str, MethodDescriptor]:
    """Every RPC of every service the privaudit.v1 protos define, by path (/package.Service/Method)."""
    methods = {}
    for module in pkgutil.iter_modules(privaudit.v1.__path__):
        if module.name.endswith("_pb2"):
            for service in importlib.import_module(f"privaudit.v1.{module.name}").DESCRIPTOR.services_by_name.values():
                methods.update({f"/{service.full_name}/{method.name}": method for method in service.methods})
    return methods


RPCS = every_rpc()


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


# ---------------------------------------------------------------- random messages

INTS = {FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
        FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
        FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
        FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
        FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1)}
PATHS = ["models/net", "datasets/members", "datasets/non_members", "datasets/population", "../models/net", "/etc",
         "", "models/net/", "./datasets/members", "datasets", "models/net/model.py"]
WORDS = ["BASELINE", "ML-LEAK", "LABEL-ONLY", "LOSS", "LIRA", "RMIA", "MEMBERSHIP_INFERENCE_ATTACK", "r", "d"]
MAX_DEPTH = 5


@dataclass
class Vocabulary:
    """What random strings are partly drawn from: real folders, attack names, and the ids of
    audits that exist (more as the fuzzing goes)."""

    task_ids: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # ids of audits accepted during a test: used after it

    def learn(self) -> None:
        """Takes in the ids accepted so far (between tests: hypothesis needs the same strategies
        all through one)."""
        self.task_ids += self.accepted
        self.accepted.clear()

    def strings(self) -> st.SearchStrategy[str]:
        return st.one_of(st.sampled_from([*PATHS, *WORDS, *self.task_ids]), st.text(max_size=30))

    def task_id(self) -> st.SearchStrategy[str]:
        """Real ids, near misses, text, and now and then far longer than any id."""
        real = st.sampled_from(self.task_ids)
        return st.one_of(real, real, real.map(lambda i: i + "0"), real.map(str.upper), st.text(max_size=40),
                         st.text(min_size=5_000, max_size=20_000, alphabet="ab\0\u202e\U0001f600"))


def sometimes(data: st.DataObject, one_in: int) -> bool:
    return data.draw(st.integers(0, one_in - 1)) == 0


def scalar(data: st.DataObject, field_: FieldDescriptor, words: Vocabulary) -> object:
    """A value of a scalar field: small numbers mostly, the type's extremes sometimes; for an
    enum, now and then a number the enum does not define (proto3 keeps it)."""
    if field_.type in INTS:
        low, high = INTS[field_.type]
        return data.draw(st.one_of(st.integers(max(low, -3), 20), st.integers(low, high)))
    if field_.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        width = 32 if field_.type == FieldDescriptor.TYPE_FLOAT else 64
        return data.draw(st.one_of(st.floats(0, 1, width=width), st.floats(width=width)))
    if field_.type == FieldDescriptor.TYPE_BOOL:
        return data.draw(st.booleans())
    if field_.type == FieldDescriptor.TYPE_ENUM:
        if sometimes(data, 8):
            return data.draw(st.integers(-2**31, 2**31 - 1))
        return data.draw(st.sampled_from([value.number for value in field_.enum_type.values]))
    if field_.type == FieldDescriptor.TYPE_BYTES:
        return data.draw(st.binary(max_size=64))
    return data.draw(words.strings())


def fill(data: st.DataObject, message: Message, words: Vocabulary, depth: int = 0) -> Message:
    """Sets a random subset of `message`'s fields (map fields are left empty), at most MAX_DEPTH deep."""
    for field_ in message.DESCRIPTOR.fields:
        if data.draw(st.booleans()):
            fill_field(data, message, field_, words, depth)
    return message


def fill_field(data: st.DataObject, message: Message, field_: FieldDescriptor, words: Vocabulary,
               depth: int) -> None:
    is_message = field_.type == FieldDescriptor.TYPE_MESSAGE
    if is_message and (depth >= MAX_DEPTH or field_.message_type.GetOptions().map_entry):
        return
    for _ in range(data.draw(st.integers(0, 3)) if field_.is_repeated else 1):
        if is_message:
            target = getattr(message, field_.name).add() if field_.is_repeated else getattr(message, field_.name)
            fill(data, target, words, depth + 1)
            target.SetInParent()
        elif field_.is_repeated:
            getattr(message, field_.name).append(scalar(data, field_, words))
        else:
            setattr(message, field_.name, scalar(data, field_, words))


def mutate(data: st.DataObject, message: Message, words: Vocabulary) -> Message:
    """`message` (a real one) with one to three point changes: a scalar drawn again (one element of
    a repeated one), a repeated field cut short or grown, a field that was unset filled."""
    for _ in range(data.draw(st.integers(1, 3))):
        parent, field_ = data.draw(st.sampled_from(fields_within(message)))
        value = getattr(parent, field_.name)
        if field_.is_repeated and value and data.draw(st.booleans()):
            if field_.type == FieldDescriptor.TYPE_MESSAGE or sometimes(data, 2):
                del value[data.draw(st.integers(0, len(value) - 1)):]
            else:
                value[data.draw(st.integers(0, len(value) - 1))] = scalar(data, field_, words)
        elif field_.type == FieldDescriptor.TYPE_MESSAGE or field_.is_repeated:
            fill_field(data, parent, field_, words, depth=MAX_DEPTH - 2)
        else:
            setattr(parent, field_.name, scalar(data, field_, words))
    return message


def fields_within(message: Message) -> list[tuple[Message, FieldDescriptor]]:
    """Every field of `message` and of the messages set in it (a repeated field counts once, with
    the fields of each of its messages), as (the message holding it, the field)."""
    found = []
    for field_ in message.DESCRIPTOR.fields:
        found.append((message, field_))
        if field_.type == FieldDescriptor.TYPE_MESSAGE and not field_.message_type.GetOptions().map_entry:
            if field_.is_repeated:
                for item in getattr(message, field_.name):
                    found += fields_within(item)
            elif message.HasField(field_.name):
                found += fields_within(getattr(message, field_.name))
    return found


def unknown_fields(data: st.DataObject) -> bytes:
    """Well-formed fields with numbers none of our messages uses (a newer caller's), which a
    proto3 parser keeps as unknown."""
    out = b""
    for _ in range(data.draw(st.integers(0, 3))):
        kind = data.draw(st.sampled_from([0, 1, 2, 5]))
        out += varint(data.draw(st.integers(1000, 2**29 - 1)) << 3 | kind)
        if kind == 0:
            out += varint(data.draw(st.integers(0, 2**64 - 1)))
        elif kind in (1, 5):
            out += data.draw(st.binary(min_size=8 if kind == 1 else 4, max_size=8 if kind == 1 else 4))
        else:
            payload = data.draw(st.binary(max_size=32))
            out += varint(len(payload)) + payload
    return out


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# ---------------------------------------------------------------- calling the services


@dataclass
class Cluster:
    """The running services, and what the fuzzing knows of them: audit ids, real shadow outputs
    (with the requests that made them) and real attack results to mutate."""

    processes: ServiceProcesses
    addresses: dict[str, str]  # service full name -> address
    words: Vocabulary
    shadow_outputs: dict[str, list[attack_worker_pb2.ShadowOutput]] = field(default_factory=dict)  # by attack
    results: list[results_pb2.AttackResult] = field(default_factory=list)
    channels: dict[str, grpc.Channel] = field(default_factory=dict)
    timers: list[threading.Timer] = field(default_factory=list)  # cancelling audits that run too long
    log_read: dict[str, int] = field(default_factory=dict)  # process -> characters of its log checked

    def channel(self, service: str) -> grpc.Channel:
        """A plain channel to `service`: every call states its own metadata."""
        if service not in self.channels:
            self.channels[service] = grpc.insecure_channel(self.addresses[service], options=CHANNEL_OPTIONS)
        return self.channels[service]

    def new_log(self) -> dict[str, str]:
        """What each process logged since the last call."""
        fresh = {}
        for name, _ in SERVED_BY.values():
            text = self.processes.log(name)
            fresh[name], self.log_read[name] = text[self.log_read.get(name, 0):], len(text)
        return fresh


@dataclass
class Reply:
    messages: list[Message]
    error: grpc.RpcError | None


def authorization(method: MethodDescriptor) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {SERVED_BY[method.containing_service.full_name][1]}")]


def call(cluster: Cluster, method: MethodDescriptor, request: bytes, metadata: list | None = None,
         on_message: Callable[[Message], None] = lambda _: None) -> Reply:
    """Sends the serialized `request` to `method` with the right token (or `metadata`): the reply's
    messages (at most STREAM_LIMIT of a stream, which is then cancelled), or its error."""
    service = method.containing_service.full_name
    channel = cluster.channel(service)
    kind = (method.client_streaming, method.server_streaming)
    stub = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[kind](
        f"/{service}/{method.name}", response_deserializer=message_class(method.output_type).FromString)
    argument = iter([request]) if method.client_streaming else request
    metadata = authorization(method) if metadata is None else metadata
    messages: list[Message] = []
    try:
        if not method.server_streaming:
            return Reply([stub(argument, timeout=CALL_TIMEOUT, metadata=metadata)], None)
        stream = stub(argument, timeout=CALL_TIMEOUT, metadata=metadata)
        for message in stream:
            messages.append(message)
            on_message(message)
            if len(messages) >= STREAM_LIMIT:
                stream.cancel()
                break
        return Reply(messages, None)
    except grpc.RpcError as error:
        return Reply(messages, error)


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            return info
    return None


def assert_deliberate(reply: Reply, what: str) -> None:
    """The reply is a success or a status the service chose: not UNKNOWN or INTERNAL, not the
    caller's deadline passing (a hang), with the error model's ErrorInfo unless gRPC gave it."""
    if reply.error is None:
        return
    code, details = reply.error.code(), reply.error.details()
    assert code not in BROKEN, f"{what}: {code.name}: {details}"
    assert code != grpc.StatusCode.DEADLINE_EXCEEDED, f"{what}: no answer within {CALL_TIMEOUT:g} s"
    if code not in GRPC_OWN:
        assert error_info(reply.error) is not None, f"{what}: {code.name} without privaudit's ErrorInfo: {details}"


def assert_healthy(cluster: Cluster, service: str) -> None:
    for name in ("", service):
        status = health_pb2_grpc.HealthStub(cluster.channel(service)).Check(
            health_pb2.HealthCheckRequest(service=name), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING, f"{service} ({name or 'overall'}): {status}"


def assert_logs_clean(cluster: Cluster) -> None:
    """No process logged a traceback since the last check: each is an exception nobody expected."""
    for name, text in cluster.new_log().items():
        found = [m.start() for m in re.finditer(r"Traceback \(most recent call last\)", text)]
        assert not found, f"{name} logged {len(found)} traceback(s); the first:\n" \
                          f"{text[max(found[0] - 500, 0):found[0] + 4000]}"


# ---------------------------------------------------------------- the cluster


PAIR = ["datasets/members", "datasets/non_members"]
SHADOW = {"shadow_model": "models/net", "shadow_datasets": ["datasets/population", "datasets/non_members"],
          "shadow_epoch": 1, "classifier_epoch": 1, "batch_size": 8}
SHADOW_MODELS = {"target_datasets": PAIR, "target_model": "models/net", "population_datasets": ["datasets/population"],
                 "num_shadow": 2, "epochs": 1, "batch_size": 8}
# A small attack of each kind that runs on the fuzz tree in well under a second: where mutation starts.
GOOD_ATTACKS = {
    "BASELINE": {"test_datasets": PAIR, "target_model": "models/net"},
    "LOSS": {"target_datasets": PAIR, "target_model": "models/net", "population_datasets": ["datasets/population"]},
    "ML-LEAK": {"target_datasets": PAIR, "target_model": "models/net", **SHADOW, "topk": 2},
    "LABEL-ONLY": {"target_datasets": PAIR, "target_model": "models/net", **SHADOW, "attack_type": "d", "d": 1},
    "LIRA": SHADOW_MODELS,
    "RMIA": {**SHADOW_MODELS, "num_population": 8, "a": 0.3},
}


def good_attack(name: str) -> dict:
    return {"type": "MEMBERSHIP_INFERENCE_ATTACK", "name": name, "args": dict(GOOD_ATTACKS[name])}


def good_spec(name: str) -> task_pb2.AttackSpec:
    """The good attack as the orchestrator sends it to a worker (every default filled in)."""
    return task_spec.to_proto(task_spec.parse_yaml(yaml.safe_dump([good_attack(name)]))).attacks[0]


def good_task_yaml() -> str:
    return yaml.safe_dump([good_attack("BASELINE")])


def rpc(path: str) -> MethodDescriptor:
    return RPCS[path]


def message(method: MethodDescriptor, **fields) -> Message:
    return message_class(method.input_type)(**fields)


ORCHESTRATOR, WORKER, REPORTER = (f"/privaudit.v1.{name}/" for name in
                                  ("OrchestratorService", "AttackWorkerService", "ReporterService"))


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[Cluster]:
    """Reporter, one worker and the orchestrator, each with its token file; a finished audit, a
    cancelled one, and every shadow output of a small LIRA and RMIA attack."""
    base = tmp_path_factory.mktemp("fuzz")
    root = write_audit_tree(base / "root").root
    labels = [i % NUM_CLASSES for i in range(24)]
    write_dataset(root / "datasets" / "population", *records(labels, [i % 3 > 0 for i in range(24)]))
    (base / "cache").mkdir()
    (base / "client-tokens").write_text(f"{CLIENT_TOKEN}\n")
    (base / "internal-tokens").write_text(f"{INTERNAL_TOKEN}\n")
    internal = ["--internal-token-file", str(base / "internal-tokens")]
    processes = ServiceProcesses(base)
    try:
        reporter = processes.start("reporter", *internal)
        worker = processes.start("attack_worker", "--storage-root", str(root), "--job-memory-mb", "2048",
                                 "--job-timeout-s", "10", "--cache-dir", str(base / "cache"), *internal)
        orchestrator = processes.start("orchestrator", "--workers", worker, "--reporter", reporter,
                                       "--state-dir", str(base / "state"), "--token-file",
                                       str(base / "client-tokens"), *internal)
        addresses = dict(zip(SERVED_BY, (orchestrator, worker, reporter), strict=True))
        fuzzed = Cluster(processes, addresses, Vocabulary())
        _seed(fuzzed)
        yield fuzzed
    finally:
        for channel in locals().get("fuzzed", Cluster(processes, {}, Vocabulary())).channels.values():
            channel.close()
        processes.stop()


@pytest.fixture
def cluster(running) -> Cluster:
    """The running cluster, its logs checked from here on, the audit ids accepted so far in use."""
    running.new_log()
    running.words.learn()
    return running


def _seed(cluster: Cluster) -> None:
    """What the fuzzing starts from: a finished audit with its results, a cancelled one, and the
    shadow outputs (and score results) of small LIRA and RMIA attacks."""
    submit = rpc(ORCHESTRATOR + "SubmitAudit")
    finished = call(cluster, submit, message(submit, task_yaml=good_task_yaml()).SerializeToString())
    assert finished.error is None and finished.messages[-1].event.HasField("done"), finished
    cancel = rpc(ORCHESTRATOR + "CancelAudit")
    cancelled: list[str] = []

    def cancel_at_once(response: Message) -> None:
        if response.event.HasField("accepted"):
            cancelled.append(response.event.task_id)
            call(cluster, cancel, message(cancel, task_id=response.event.task_id).SerializeToString())

    call(cluster, submit, message(submit, task_yaml=good_task_yaml()).SerializeToString(), on_message=cancel_at_once)
    cluster.words.task_ids += [finished.messages[0].event.task_id, *cancelled]
    cluster.results += [m.event.attack_result for m in finished.messages if m.event.HasField("attack_result")]

    run = rpc(WORKER + "RunAttack")
    for name in ("LIRA", "RMIA"):
        request = attack_worker_pb2.RunAttackRequest(task_id=f"seed-{name}", attack=good_spec(name), seed=SEED)
        outputs = []
        for index in range(2):
            request.shadow.shadow_index = index
            reply = call(cluster, run, request.SerializeToString())
            assert reply.error is None and reply.messages[-1].HasField("shadow"), reply
            outputs.append(reply.messages[-1].shadow)
        request.score.shadows.extend(outputs)
        scored = call(cluster, run, request.SerializeToString())
        assert scored.error is None and scored.messages[-1].result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, \
            scored
        cluster.results.append(scored.messages[-1].result)
        cluster.shadow_outputs[name] = outputs
    assert_logs_clean(cluster)


# ---------------------------------------------------------------- each RPC's requests and replies


def answered(reply: Reply) -> bool:
    return reply.error is None


@dataclass(frozen=True)
class Fuzz:
    """How to fuzz one RPC: `examples` requests drawn by `draw`, each reply checked by `check`
    (besides being deliberate), streams handed message by message to `on_message`. At least
    DEEP_SHARE of the requests must get past validation (`deep` says which did), or the fuzzing
    would only ever meet the first check."""

    examples: int
    draw: Callable[[st.DataObject, Cluster, MethodDescriptor], Message]
    check: Callable[[Cluster, Message, Reply], None] = lambda cluster, request, reply: None
    on_message: Callable[[Cluster, Message], None] = lambda cluster, message: None
    deep: Callable[[Reply], bool] = answered


def random_message(data: st.DataObject, cluster: Cluster, method: MethodDescriptor) -> Message:
    return fill(data, message(method), cluster.words)


ARG_NAMES = sorted({name for args in GOOD_ATTACKS.values() for name in args} | {"r", "seed", "online", "augment",
                                                                             "gamma", "shadow_train_size"})
# YAML values an edited task may hold: numbers at and past every bound, text no path may hold, nesting.
YAML_ATOMS = st.one_of(st.none(), st.booleans(), st.integers(-3, 20), st.integers(-2**70, 2**70),
                       st.sampled_from([0.0, -0.0, 1e-320, 1e300, float("nan"), float("inf"), -1.0]),
                       st.floats(), st.sampled_from(PATHS + WORDS), st.text(max_size=20))
YAML_VALUES = st.recursive(YAML_ATOMS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(ARG_NAMES) | st.text(max_size=8), inner, max_size=4), max_leaves=12)


def edited_attacks(data: st.DataObject) -> list:
    """Good attacks with up to three edits: an argument set to another value, added or removed; a
    name or type changed; the args replaced."""
    attacks = [good_attack(name) for name in data.draw(st.lists(st.sampled_from(list(GOOD_ATTACKS)), min_size=1,
                                                                max_size=3))]
    for _ in range(data.draw(st.integers(0, 3))):
        attack = data.draw(st.sampled_from(attacks))
        edit = data.draw(st.sampled_from(["set", "set", "set", "remove", "name", "type", "args"]))
        if edit == "set":
            own = sorted(attack["args"]) if isinstance(attack["args"], dict) else []
            names = st.sampled_from(own) if own and not sometimes(data, 4) else st.sampled_from(ARG_NAMES)
            if isinstance(attack["args"], dict):
                attack["args"][data.draw(names)] = data.draw(YAML_VALUES)
        elif edit == "remove" and isinstance(attack["args"], dict) and attack["args"]:
            del attack["args"][data.draw(st.sampled_from(sorted(attack["args"])))]
        elif edit in ("name", "type"):
            attack[edit] = data.draw(st.one_of(st.sampled_from(WORDS), YAML_VALUES))
        elif edit == "args":
            attack["args"] = data.draw(YAML_VALUES)
    return attacks


def submit_request(data: st.DataObject, cluster: Cluster, method: MethodDescriptor) -> Message:
    """Good tasks edited (as YAML, or typed and mutated), typed tasks drawn field by field, YAML
    text and values at random."""
    request = fill(data, message(method), cluster.words) if sometimes(data, 4) else message(method)
    how = data.draw(st.sampled_from(["edited", "edited", "edited", "mutated", "typed", "random"]))
    if how == "mutated":
        request.task.CopyFrom(task_spec.to_proto(task_spec.parse_yaml(yaml.safe_dump(
            [good_attack(name) for name in data.draw(st.lists(st.sampled_from(list(GOOD_ATTACKS)), min_size=1,
                                                                max_size=3))]))))
        mutate(data, request.task, cluster.words)
    elif how == "typed":
        request.task.CopyFrom(fill(data, task_pb2.Task(), cluster.words))
    elif how == "edited":
        text = yaml.safe_dump(edited_attacks(data))
        if sometimes(data, 5):
            at = data.draw(st.integers(0, len(text)))
            text = text[:at] + data.draw(st.text(max_size=3)) + text[at + data.draw(st.integers(0, 3)):]
        request.task_yaml = text
    else:
        request.task_yaml = data.draw(st.one_of(st.text(max_size=200), YAML_VALUES.map(yaml.safe_dump)))
    return request


def cancel_audit(cluster: Cluster, task_id: str) -> None:
    cancel = rpc(ORCHESTRATOR + "CancelAudit")
    assert_deliberate(call(cluster, cancel, message(cancel, task_id=task_id).SerializeToString()), "cancelling")


def cancel_when_slow(cluster: Cluster, response: Message) -> None:
    """An accepted audit may run for AUDIT_TIME_S (a good attack edited runs to its report in
    that time), then it is cancelled; its id joins those the other RPCs are fuzzed with."""
    if response.event.HasField("accepted"):
        cluster.words.accepted.append(response.event.task_id)
        cluster.timers.append(threading.Timer(AUDIT_TIME_S, cancel_audit, (cluster, response.event.task_id)))
        cluster.timers[-1].start()


def check_submitted(cluster: Cluster, request: Message, reply: Reply) -> None:
    """An accepted audit's stream ends with `done` (the cancellation's, if no other)."""
    for timer in cluster.timers:
        timer.cancel()
        timer.join()
    cluster.timers.clear()
    if reply.messages and reply.messages[0].event.HasField("accepted"):
        cancel_audit(cluster, reply.messages[0].event.task_id)  # in case the stream was cut at STREAM_LIMIT
        assert reply.error is not None or reply.messages[-1].event.HasField("done"), reply


def task_id_request(data: st.DataObject, cluster: Cluster, method: MethodDescriptor) -> Message:
    request = fill(data, message(method), cluster.words)
    request.task_id = data.draw(cluster.words.task_id())
    return request


def check_audit(cluster: Cluster, request: Message, reply: Reply) -> None:
    if reply.error is None:
        assert reply.messages[0].audit.task_id == request.task_id, reply


def check_cancelled(cluster: Cluster, request: Message, reply: Reply) -> None:
    check_audit(cluster, request, reply)
    if reply.error is None:
        assert reply.messages[0].audit.state in (orchestrator_pb2.AUDIT_STATE_SUCCEEDED,
                                                 orchestrator_pb2.AUDIT_STATE_FAILED,
                                                 orchestrator_pb2.AUDIT_STATE_CANCELLED), reply


def watch_request(data: st.DataObject, cluster: Cluster, method: MethodDescriptor) -> Message:
    request = task_id_request(data, cluster, method)
    request.from_sequence = data.draw(st.one_of(st.integers(0, 12), st.integers(0, 2**64 - 1)))
    return request


def check_watched(cluster: Cluster, request: Message, reply: Reply) -> None:
    """Events come numbered from `from_sequence` on, one after another, and end with `done`."""
    numbers = [m.event.sequence for m in reply.messages if not m.event.HasField("heartbeat")]
    assert numbers == list(range(request.from_sequence, request.from_sequence + len(numbers))), numbers
    if reply.error is None and numbers:
        assert reply.messages[-1].event.HasField("done"), reply


def check_listed(cluster: Cluster, request: Message, reply: Reply) -> None:
    if reply.error is None:
        assert 0 < len(reply.messages[0].audits) <= (request.page_size or 100), len(reply.messages[0].audits)


def check_attacks_listed(cluster: Cluster, request: Message, reply: Reply) -> None:
    assert reply.error is None and {a.name for a in reply.messages[0].attacks} >= {"BASELINE", "LIRA"}, reply


def check_capacity(cluster: Cluster, request: Message, reply: Reply) -> None:
    assert reply.error is None and reply.messages[0].slots >= 1, reply


def run_attack_request(data: st.DataObject, cluster: Cluster, method: MethodDescriptor) -> Message:
    """Drawn field by field, or a good attack's job mutated: the whole attack, or for LIRA and
    RMIA a shadow part (any index) or the score part with the real shadow outputs, their logits
    changed (extreme, NaN, infinite, of another number of classes), outputs dropped, repeated or
    taken from the other attack."""
    if sometimes(data, 3):
        return fill(data, message(method), cluster.words)
    name = data.draw(st.sampled_from(list(GOOD_ATTACKS)))
    request = attack_worker_pb2.RunAttackRequest(task_id=f"fuzz-{name}", attack_index=data.draw(st.integers(0, 3)),
                                                 attack=good_spec(name), seed=SEED)
    part = data.draw(st.sampled_from(["whole", "shadow", "score", "score"])) if name in cluster.shadow_outputs \
        else "whole"
    if part == "shadow":
        request.shadow.shadow_index = data.draw(st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1)))
    elif part == "score":
        request.score.SetInParent()
        outputs = list(cluster.shadow_outputs[name])
        if sometimes(data, 6):
            every = [output for outputs in cluster.shadow_outputs.values() for output in outputs]
            outputs = data.draw(st.lists(st.sampled_from(every), max_size=4))
        for output in outputs:
            request.score.shadows.add().CopyFrom(output)
            changed_logits(data, request.score.shadows[-1])
    if sometimes(data, 4):
        mutate(data, request, cluster.words)
    return request


def changed_logits(data: st.DataObject, output: attack_worker_pb2.ShadowOutput) -> None:
    """Now and then other logits for a shadow output: the same shape with other values (extreme
    ones, sometimes NaN or infinite), or another number of classes, consistently described."""
    if sometimes(data, 2):
        return
    if sometimes(data, 4):
        output.num_classes = data.draw(st.integers(1, 6))
    count = output.num_rows * output.num_classes
    values = st.one_of(st.floats(-50, 50, width=32), st.floats(-50, 50, width=32),
                       st.sampled_from([3e38, -3e38, 1e-45, 0.0]), st.sampled_from([np.nan, np.inf, -np.inf]))
    drawn = data.draw(st.lists(values, min_size=count, max_size=count)) if count <= 256 else [0.0] * count
    output.logits = np.asarray(drawn, dtype="<f4").tobytes()


def job_ran(reply: Reply) -> bool:
    """The job ran to scores (or a shadow model's outputs)."""
    return reply.error is None and (reply.messages[-1].HasField("shadow") or
                                    reply.messages[-1].result.status == results_pb2.ATTACK_STATUS_SUCCEEDED)


def audit_accepted(reply: Reply) -> bool:
    return bool(reply.messages) and reply.messages[0].event.HasField("accepted")


def check_job(cluster: Cluster, request: Message, reply: Reply) -> None:
    """Progress, then one result or shadow output, last (a shadow output by reference after its
    entry's chunks, when the request asked for them)."""
    if reply.error is None:
        *progress, last = reply.messages
        chunks = [m for m in progress if m.HasField("entry_chunk")]
        assert not chunks or (last.HasField("shadow") and request.shadow.stream_entry
                              and progress[-len(chunks):] == chunks), reply
        assert all(m.HasField("progress") for m in progress[:len(progress) - len(chunks)]), reply
        assert not last.HasField("progress"), reply
        if last.HasField("result"):
            assert last.result.attack_index == request.attack_index, last.result


# How a PutEntries chunk is spoilt: its announced digest or size, its bytes, its offset (up to the
# largest uint64), its key (another entry's, or not a key), or its announcement dropped.
ENTRY_FAULTS = ["digest", "size", "bytes", "offset", "another key", "not a key", "unannounced"]


def put_entries_request(data: st.DataObject, cluster: Cluster, method: MethodDescriptor) -> Message:
    """Drawn field by field, or a real shadow entry of the worker's cache as one chunk: as it
    is (stored again), or spoilt one way of ENTRY_FAULTS, and now and then mutated further."""
    if sometimes(data, 4):
        return fill(data, message(method), cluster.words)
    output = data.draw(st.sampled_from([o for outputs in cluster.shadow_outputs.values() for o in outputs]))
    entry = (cluster.processes.folder / "cache" / "shadows" / f"{output.cache_key}.npz").read_bytes()
    chunk = attack_worker_pb2.EntryChunk(cache_key=output.cache_key, data=entry, entry=attack_worker_pb2.StoredEntry(
        size_bytes=len(entry), sha256=hashlib.sha256(entry).hexdigest()))
    fault = data.draw(st.sampled_from([None, None, None, *ENTRY_FAULTS]))
    if fault == "digest":
        chunk.entry.sha256 = data.draw(st.sampled_from([hashlib.sha256(b"other").hexdigest(), "", "z" * 64]))
    elif fault == "size":
        chunk.entry.size_bytes = data.draw(st.sampled_from([0, len(entry) - 1, len(entry) + 1, 2**64 - 1]))
    elif fault == "bytes":
        chunk.data = data.draw(st.sampled_from([entry[:-1], entry + b"x", b"", bytes(len(entry))]))
    elif fault == "offset":
        chunk.offset = data.draw(st.sampled_from([1, len(entry), 2**63, 2**64 - 1]))
    elif fault == "another key":
        chunk.cache_key = hashlib.sha256(data.draw(st.binary(max_size=8))).hexdigest()
    elif fault == "not a key":
        chunk.cache_key = data.draw(st.sampled_from(["", "../" * 30, output.cache_key.upper(), output.cache_key[:-1],
                                                     "/etc/passwd", "a" * 5000]))
    elif fault == "unannounced":
        chunk.ClearField("entry")
    request = attack_worker_pb2.PutEntriesRequest(chunk=chunk)
    if sometimes(data, 5):
        mutate(data, request, cluster.words)
    return request


def check_put_entries(cluster: Cluster, request: Message, reply: Reply) -> None:
    """Stored: the chunk was a whole entry as announced, now in the cache under its key.
    Otherwise INVALID_ARGUMENT naming what was wrong."""
    chunk = request.chunk
    whole = (chunk.offset == 0 and chunk.HasField("entry") and re.fullmatch("[0-9a-f]{64}", chunk.cache_key)
             and chunk.entry.size_bytes == len(chunk.data) and 0 < len(chunk.data) <= 512 * 1024
             and chunk.entry.sha256 == hashlib.sha256(chunk.data).hexdigest())
    if whole:
        assert reply.error is None and list(reply.messages[0].cache_key) == [chunk.cache_key], reply
        stored = cluster.processes.folder / "cache" / "shadows" / f"{chunk.cache_key}.npz"
        assert stored.read_bytes() == chunk.data
    else:
        assert reply.error is not None and reply.error.code() == grpc.StatusCode.INVALID_ARGUMENT, reply


def build_report_request(data: st.DataObject, cluster: Cluster, method: MethodDescriptor) -> Message:
    """Real attack results mutated (now and then more than a task can have), or drawn field by field."""
    request = fill(data, message(method), cluster.words)
    if sometimes(data, 3):
        return request
    del request.results[:]
    request.task_id = "fuzz-report" if not sometimes(data, 4) else request.task_id  # the orchestrator's kind, mostly
    if not sometimes(data, 4):  # and, mostly, the orchestrator's provenance, JSON beside, no baseline
        request.provenance.CopyFrom(report_pb2.ReportProvenance(seed=7, task_digest="0" * 64))
        del request.also_formats[:]
        request.also_formats.append(report_pb2.REPORT_FORMAT_JSON)
        request.baseline_report_json = ""
    chosen = data.draw(st.lists(st.sampled_from(cluster.results), min_size=1, max_size=4))
    for index, result in enumerate(chosen * data.draw(st.sampled_from([1, 1, 1, 1, 1, 17]))):
        copy = request.results.add()
        copy.CopyFrom(result)
        copy.attack_index = index
        if sometimes(data, 2):
            mutate(data, copy, cluster.words)
    return request


def check_report(cluster: Cluster, request: Message, reply: Reply) -> None:
    """A summary, then chunks: one rendering after another, each one's last chunk marked."""
    if reply.error is None:
        summary, *chunks = reply.messages
        assert summary.HasField("summary") and chunks and all(c.HasField("chunk") for c in chunks), reply
        formats = [c.chunk.format for c in chunks]
        after = [*formats[1:], None]
        assert [c.chunk.last for c in chunks] == [a != b for a, b in zip(formats, after, strict=True)], reply
        runs = [f for f, _ in itertools.groupby(formats)]
        assert len(set(runs)) == len(runs), reply  # a rendering's chunks are together


REQUESTS: dict[str, Fuzz] = {
    ORCHESTRATOR + "SubmitAudit": Fuzz(100, submit_request, check_submitted, cancel_when_slow, audit_accepted),
    ORCHESTRATOR + "GetAudit": Fuzz(60, task_id_request, check_audit),
    ORCHESTRATOR + "ListAudits": Fuzz(30, random_message, check_listed),
    ORCHESTRATOR + "WatchAudit": Fuzz(60, watch_request, check_watched),
    ORCHESTRATOR + "CancelAudit": Fuzz(60, task_id_request, check_cancelled),
    ORCHESTRATOR + "ListAttacks": Fuzz(15, random_message, check_attacks_listed),
    WORKER + "RunAttack": Fuzz(100, run_attack_request, check_job, deep=job_ran),
    WORKER + "GetCapacity": Fuzz(15, random_message, check_capacity),
    WORKER + "PutEntries": Fuzz(60, put_entries_request, check_put_entries),
    REPORTER + "BuildReport": Fuzz(100, build_report_request, check_report),
}


# ---------------------------------------------------------------- the tests


def test_every_rpc_of_every_service_is_fuzzed():
    assert set(REQUESTS) == set(RPCS), "give each RPC a request strategy in REQUESTS (and no stale ones): " \
                                       f"missing {sorted(set(RPCS) - set(REQUESTS))}, " \
                                       f"stale {sorted(set(REQUESTS) - set(RPCS))}"
    assert {m.containing_service.full_name for m in RPCS.values()} <= set(SERVED_BY), "which process serves it?"


@pytest.mark.parametrize("path", sorted(RPCS))
def test_random_requests(cluster, path):
    method, fuzz = RPCS[path], REQUESTS.get(path)
    assert fuzz is not None, f"{path} has no request strategy in REQUESTS"
    deep = []

    @fuzz_settings(fuzz.examples)
    @given(data=st.data())
    def send(data):
        request = fuzz.draw(data, cluster, method)
        reply = call(cluster, method, request.SerializeToString() + unknown_fields(data),
                     on_message=lambda m: fuzz.on_message(cluster, m))
        assert_deliberate(reply, path)
        fuzz.check(cluster, request, reply)
        deep.append(fuzz.deep(reply))

    send()
    assert len(deep) >= fuzz.examples and sum(deep) >= fuzz.examples * DEEP_SHARE, f"{sum(deep)} of {len(deep)} ran"
    assert_healthy(cluster, method.containing_service.full_name)
    assert_logs_clean(cluster)


def nested_groups(depth: int) -> bytes:
    """An unknown field holding groups nested `depth` deep (a parser must stop well before)."""
    return varint(999 << 3 | 3) * depth + varint(999 << 3 | 4) * depth


# Bytes no parser of any message may take: nesting past any recursion limit, a length past the
# end, a varint of eleven bytes, a field number 0, an end-group with no start.
UNDECODABLE = [nested_groups(100_000), varint(1 << 3 | 2) + varint(2**31), b"\xff" * 11, b"\x00\x01",
               varint(999 << 3 | 4)]


@pytest.mark.parametrize("path", sorted(RPCS))
def test_raw_bytes(cluster, path):
    """Bytes that mostly do not decode: INVALID_ARGUMENT, a line in the log (not a traceback)."""
    method = RPCS[path]
    decode = message_class(method.input_type).FromString

    def send(request: bytes) -> None:
        try:
            decode(request)
            decodes = True
        except DecodeError:
            decodes = False
        reply = call(cluster, method, request)
        assert_deliberate(reply, f"{path} {request[:40]!r}")
        if not decodes:
            assert reply.error is not None and reply.error.code() == grpc.StatusCode.INVALID_ARGUMENT, reply

    for request in UNDECODABLE:
        send(request)

    @fuzz_settings(RAW_EXAMPLES)
    @given(request=st.binary(min_size=1, max_size=200))
    def send_random(request):
        send(request)

    send_random()
    assert_healthy(cluster, method.containing_service.full_name)
    assert_logs_clean(cluster)


def authorization_values(token: str) -> st.SearchStrategy[str]:
    """The right value, near misses of it, others' tokens and printable junk."""
    return st.one_of(st.just(f"Bearer {token}"), st.sampled_from([
        f"Bearer {token} ", f" Bearer {token}", f"Bearer  {token}", f"bearer {token}", f"BEARER {token}",
        f"Bearer {token[:-1]}", f"Bearer {token}x", f"Bearer {token.upper()}", token, f"Bearer{token}",
        f"Bearer {CLIENT_TOKEN if token != CLIENT_TOKEN else INTERNAL_TOKEN}", "Bearer ", "", "Basic Zm9vOmJhcg==",
        f"Bearer {token},Bearer {token}", f"Bearer {token};"]),
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))


@pytest.mark.parametrize("path", sorted(RPCS))
def test_authorization_metadata(cluster, path):
    """Exactly one `authorization: Bearer <token>` with the service's token is let through; any
    other metadata is UNAUTHENTICATED, whatever the request."""
    method = RPCS[path]
    token = SERVED_BY[method.containing_service.full_name][1]
    entry = st.one_of(st.tuples(st.just("authorization"), authorization_values(token)),
                      st.tuples(st.sampled_from(["x-authorization", "token", "authorization-token"]),
                                authorization_values(token)))

    @fuzz_settings(METADATA_EXAMPLES)
    @given(metadata=st.lists(entry, max_size=3))
    def send(metadata):
        reply = call(cluster, method, b"", metadata=metadata)
        assert_deliberate(reply, f"{path} with {metadata}")
        refused = reply.error is not None and reply.error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert refused != (metadata and [(k, v) for k, v in metadata if k == "authorization"]
                           == [("authorization", f"Bearer {token}")]), (metadata, reply)

    send()
    assert_healthy(cluster, method.containing_service.full_name)
    assert_logs_clean(cluster)


def bulk(method: MethodDescriptor, size: int) -> bytes:
    """A request of about `size` bytes: its first string field that long (depth first), or, for a
    message without one, an unknown field that long."""
    request = message(method)
    target, name = _first_string_field(request)
    if target is None:
        return request.SerializeToString() + varint(999 << 3 | 2) + varint(size) + b"a" * size
    setattr(target, name, "a" * size)
    return request.SerializeToString()


def _first_string_field(message_: Message, depth: int = 0) -> tuple[Message | None, str]:
    fields = message_.DESCRIPTOR.fields
    for field_ in fields:
        if field_.type == FieldDescriptor.TYPE_STRING and not field_.is_repeated:
            return message_, field_.name
    for field_ in fields:
        if field_.type == FieldDescriptor.TYPE_MESSAGE and not field_.is_repeated and depth < MAX_DEPTH:
            found = _first_string_field(getattr(message_, field_.name), depth + 1)
            if found[0] is not None:
                return found
    return None, ""


@pytest.mark.parametrize("path", sorted(RPCS))
def test_messages_at_and_past_the_size_limit(cluster, path):
    """A request just under its service's receive limit gets a deliberate answer; one over it
    RESOURCE_EXHAUSTED from gRPC."""
    method = RPCS[path]
    limit = RECEIVE_LIMIT[SERVED_BY[method.containing_service.full_name][0]]
    under = call(cluster, method, bulk(method, limit - 1024))
    assert_deliberate(under, f"{path}, {limit - 1024:,} bytes")
    over = call(cluster, method, bulk(method, limit + 1024))
    assert over.error is not None and over.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, over
    assert_healthy(cluster, method.containing_service.full_name)
    assert_logs_clean(cluster)


def test_enum_values_the_proto_does_not_define_are_refused(cluster):
    unknown_type = task_pb2.AttackSpec(type=99, baseline=task_pb2.BaselineArgs(target_model="models/net"))
    unknown_augmentation = task_pb2.AttackSpec(type=task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE,
                                               label_only=task_pb2.LabelOnlyArgs(attack_type=99))
    submit = RPCS[ORCHESTRATOR + "SubmitAudit"]
    for spec in (unknown_type, unknown_augmentation):
        request = orchestrator_pb2.SubmitAuditRequest(task=task_pb2.Task(attacks=[spec]))
        reply = call(cluster, submit, request.SerializeToString())
        assert reply.error is not None and reply.error.code() == grpc.StatusCode.INVALID_ARGUMENT, reply
    report = RPCS[REPORTER + "BuildReport"]
    reply = call(cluster, report, reporter_pb2.BuildReportRequest(results=cluster.results[:1],
                                                                  format=99).SerializeToString())
    assert reply.error is not None and reply.error.code() == grpc.StatusCode.INVALID_ARGUMENT, reply
    assert report_pb2.ReportFormat.Name(report_pb2.REPORT_FORMAT_TEXT)
