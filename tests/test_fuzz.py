"""Fuzzing every service with random, well-formed and malformed messages (hypothesis).

Random messages are drawn field by field from the protos' descriptors; strings are drawn partly
from real folders of the storage root, so that some requests get past validation and run. Every
reply must be a success or a deliberate gRPC status: never UNKNOWN (an unhandled exception) or
INTERNAL, and each service must still answer its health check afterwards.
"""

from __future__ import annotations

import grpc
import pytest
import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from worker_fixtures import write_audit_tree

from client import LocalCluster
from privaudit.v1 import (
    attack_worker_pb2,
    attack_worker_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    reporter_pb2,
    reporter_pb2_grpc,
    task_pb2,
)

pytestmark = pytest.mark.e2e

EXAMPLES = 100  # per service
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# Statuses a service may answer with on purpose; UNKNOWN and INTERNAL mean it broke.
BROKEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
STRINGS = st.one_of(st.sampled_from(["models/net", "datasets/members", "datasets/non_members", "../models/net",
                                     "/etc", "", "BASELINE", "LIRA", "MEMBERSHIP_INFERENCE_ATTACK"]),
                    st.text(max_size=30))
INTS = {FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
        FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
        FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
        FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
        FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1)}


def scalar(field: FieldDescriptor) -> st.SearchStrategy:
    """Values of a scalar field: small numbers mostly, the type's extremes sometimes."""
    if field.type in INTS:
        low, high = INTS[field.type]
        return st.one_of(st.integers(max(low, -3), 20), st.integers(low, high))
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([value.number for value in field.enum_type.values])
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    return STRINGS


def fill(data: st.DataObject, message: Message, depth: int = 0) -> Message:
    """Sets a random subset of `message`'s fields (map fields are left empty), nesting at most 3 deep."""
    descriptor: Descriptor = message.DESCRIPTOR
    for field in descriptor.fields:
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE
        if (is_message and (depth >= 3 or field.message_type.GetOptions().map_entry)) or not data.draw(st.booleans()):
            continue
        repeated = field.is_repeated
        for _ in range(data.draw(st.integers(0, 3)) if repeated else 1):
            if is_message:
                target = getattr(message, field.name).add() if repeated else getattr(message, field.name)
                fill(data, target, depth + 1)
                if not repeated:
                    target.SetInParent()
            elif repeated:
                getattr(message, field.name).append(data.draw(scalar(field)))
            else:
                setattr(message, field.name, data.draw(scalar(field)))
    return message


YAML_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | STRINGS,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(STRINGS, inner, max_size=4),
                           max_leaves=12)
TASK_YAML = st.one_of(st.text(max_size=200), YAML_VALUES.map(yaml.safe_dump))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tree = write_audit_tree(tmp_path_factory.mktemp("fuzz") / "root")
    with LocalCluster(workers=1, storage_root=tree.root,
                      worker_flags=["--job-memory-mb", "2048", "--job-timeout-s", "10"]) as running:
        yield running


def channel_to(cluster: LocalCluster, name: str) -> grpc.Channel:
    return grpc.insecure_channel(cluster.service(name).address)


def assert_proper(call) -> None:
    """Consumes a streaming call; an error must be a deliberate status."""
    try:
        for _ in call:
            pass
    except grpc.RpcError as error:
        assert error.code() not in BROKEN, f"{error.code().name}: {error.details()}"


def assert_healthy(channel: grpc.Channel) -> None:
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_orchestrator_submit_audit(cluster):
    with channel_to(cluster, "orchestrator") as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)

        @FUZZ
        @given(data=st.data(), task_yaml=TASK_YAML, typed=st.booleans())
        def submit(data, task_yaml, typed):
            sent.append(request := orchestrator_pb2.SubmitAuditRequest())
            if typed:
                request.task.CopyFrom(fill(data, task_pb2.Task()))
            else:
                request.task_yaml = task_yaml
            call = stub.SubmitAudit(request, timeout=30)
            try:
                first = next(call)
            except StopIteration:
                return
            except grpc.RpcError as error:
                assert error.code() not in BROKEN, f"{error.code().name}: {error.details()}"
                return
            stub.CancelAudit(orchestrator_pb2.CancelAuditRequest(task_id=first.task_id), timeout=10)
            assert_proper(call)

        sent: list[orchestrator_pb2.SubmitAuditRequest] = []
        submit()
        assert len(sent) >= EXAMPLES
        assert_healthy(channel)


def test_worker_run_attack(cluster):
    with channel_to(cluster, "worker-0") as channel:
        stub = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel)

        @FUZZ
        @given(data=st.data())
        def run(data):
            sent.append(request := fill(data, attack_worker_pb2.RunAttackRequest()))
            assert_proper(stub.RunAttack(request, timeout=30))

        sent: list[attack_worker_pb2.RunAttackRequest] = []
        run()
        assert len(sent) >= EXAMPLES
        assert_healthy(channel)


def test_enum_values_the_proto_does_not_define_are_refused(cluster):
    unknown_type = task_pb2.AttackSpec(type=99, baseline=task_pb2.BaselineArgs(target_model="models/net"))
    unknown_augmentation = task_pb2.AttackSpec(type=task_pb2.ATTACK_TYPE_MEMBERSHIP_INFERENCE,
                                               label_only=task_pb2.LabelOnlyArgs(attack_type=99))
    with channel_to(cluster, "orchestrator") as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        for spec in (unknown_type, unknown_augmentation):
            request = orchestrator_pb2.SubmitAuditRequest(task=task_pb2.Task(attacks=[spec]))
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.SubmitAudit(request, timeout=30))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()


def test_reporter_build_report(cluster):
    with channel_to(cluster, "reporter") as channel:
        stub = reporter_pb2_grpc.ReporterServiceStub(channel)

        @FUZZ
        @given(data=st.data())
        def build(data):
            sent.append(request := fill(data, reporter_pb2.BuildReportRequest()))
            assert_proper(stub.BuildReport(request, timeout=30))

        sent: list[reporter_pb2.BuildReportRequest] = []
        build()
        assert len(sent) >= EXAMPLES
        assert_healthy(channel)
