import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from privaudit.v1 import report_pb2 as _report_pb2
from privaudit.v1 import results_pb2 as _results_pb2
from privaudit.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_STATE_UNSPECIFIED: _ClassVar[AuditState]
    AUDIT_STATE_QUEUED: _ClassVar[AuditState]
    AUDIT_STATE_RUNNING: _ClassVar[AuditState]
    AUDIT_STATE_SUCCEEDED: _ClassVar[AuditState]
    AUDIT_STATE_FAILED: _ClassVar[AuditState]
    AUDIT_STATE_CANCELLED: _ClassVar[AuditState]
AUDIT_STATE_UNSPECIFIED: AuditState
AUDIT_STATE_QUEUED: AuditState
AUDIT_STATE_RUNNING: AuditState
AUDIT_STATE_SUCCEEDED: AuditState
AUDIT_STATE_FAILED: AuditState
AUDIT_STATE_CANCELLED: AuditState

class SubmitAuditRequest(_message.Message):
    __slots__ = ("task_yaml", "task", "report_format", "seed", "baseline_report_json")
    TASK_YAML_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    REPORT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BASELINE_REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    task_yaml: str
    task: _task_pb2.Task
    report_format: _report_pb2.ReportFormat
    seed: int
    baseline_report_json: str
    def __init__(self, task_yaml: _Optional[str] = ..., task: _Optional[_Union[_task_pb2.Task, _Mapping]] = ..., report_format: _Optional[_Union[_report_pb2.ReportFormat, str]] = ..., seed: _Optional[int] = ..., baseline_report_json: _Optional[str] = ...) -> None: ...

class SubmitAuditResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: AuditEvent
    def __init__(self, event: _Optional[_Union[AuditEvent, _Mapping]] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("sequence", "task_id", "accepted", "progress", "attack_result", "report_summary", "report_chunk", "done", "notice", "heartbeat")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ATTACK_RESULT_FIELD_NUMBER: _ClassVar[int]
    REPORT_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REPORT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    task_id: str
    accepted: AuditAccepted
    progress: _results_pb2.JobProgress
    attack_result: _results_pb2.AttackResult
    report_summary: _report_pb2.ReportSummary
    report_chunk: _report_pb2.ReportChunk
    done: AuditDone
    notice: AuditNotice
    heartbeat: AuditHeartbeat
    def __init__(self, sequence: _Optional[int] = ..., task_id: _Optional[str] = ..., accepted: _Optional[_Union[AuditAccepted, _Mapping]] = ..., progress: _Optional[_Union[_results_pb2.JobProgress, _Mapping]] = ..., attack_result: _Optional[_Union[_results_pb2.AttackResult, _Mapping]] = ..., report_summary: _Optional[_Union[_report_pb2.ReportSummary, _Mapping]] = ..., report_chunk: _Optional[_Union[_report_pb2.ReportChunk, _Mapping]] = ..., done: _Optional[_Union[AuditDone, _Mapping]] = ..., notice: _Optional[_Union[AuditNotice, _Mapping]] = ..., heartbeat: _Optional[_Union[AuditHeartbeat, _Mapping]] = ...) -> None: ...

class AuditNotice(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class AuditHeartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditAccepted(_message.Message):
    __slots__ = ("attack_names", "seed")
    ATTACK_NAMES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    attack_names: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    def __init__(self, attack_names: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ...) -> None: ...

class AuditDone(_message.Message):
    __slots__ = ("succeeded_attacks", "failed_attacks", "overall_risk", "error", "cancelled")
    SUCCEEDED_ATTACKS_FIELD_NUMBER: _ClassVar[int]
    FAILED_ATTACKS_FIELD_NUMBER: _ClassVar[int]
    OVERALL_RISK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    succeeded_attacks: int
    failed_attacks: int
    overall_risk: _report_pb2.RiskLevel
    error: str
    cancelled: bool
    def __init__(self, succeeded_attacks: _Optional[int] = ..., failed_attacks: _Optional[int] = ..., overall_risk: _Optional[_Union[_report_pb2.RiskLevel, str]] = ..., error: _Optional[str] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class AuditStatus(_message.Message):
    __slots__ = ("task_id", "state", "created", "attack_names", "results", "summary", "event_count", "error")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ATTACK_NAMES_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: AuditState
    created: _timestamp_pb2.Timestamp
    attack_names: _containers.RepeatedScalarFieldContainer[str]
    results: _containers.RepeatedCompositeFieldContainer[_results_pb2.AttackResult]
    summary: _report_pb2.ReportSummary
    event_count: int
    error: str
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[AuditState, str]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attack_names: _Optional[_Iterable[str]] = ..., results: _Optional[_Iterable[_Union[_results_pb2.AttackResult, _Mapping]]] = ..., summary: _Optional[_Union[_report_pb2.ReportSummary, _Mapping]] = ..., event_count: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class GetAuditRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetAuditResponse(_message.Message):
    __slots__ = ("audit",)
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    audit: AuditStatus
    def __init__(self, audit: _Optional[_Union[AuditStatus, _Mapping]] = ...) -> None: ...

class ListAuditsRequest(_message.Message):
    __slots__ = ("page_size",)
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    def __init__(self, page_size: _Optional[int] = ...) -> None: ...

class ListAuditsResponse(_message.Message):
    __slots__ = ("audits",)
    AUDITS_FIELD_NUMBER: _ClassVar[int]
    audits: _containers.RepeatedCompositeFieldContainer[AuditStatus]
    def __init__(self, audits: _Optional[_Iterable[_Union[AuditStatus, _Mapping]]] = ...) -> None: ...

class WatchAuditRequest(_message.Message):
    __slots__ = ("task_id", "from_sequence")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    from_sequence: int
    def __init__(self, task_id: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class WatchAuditResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: AuditEvent
    def __init__(self, event: _Optional[_Union[AuditEvent, _Mapping]] = ...) -> None: ...

class CancelAuditRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class CancelAuditResponse(_message.Message):
    __slots__ = ("audit",)
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    audit: AuditStatus
    def __init__(self, audit: _Optional[_Union[AuditStatus, _Mapping]] = ...) -> None: ...

class ListAttacksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAttacksResponse(_message.Message):
    __slots__ = ("attacks",)
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    attacks: _containers.RepeatedCompositeFieldContainer[AttackDescription]
    def __init__(self, attacks: _Optional[_Iterable[_Union[AttackDescription, _Mapping]]] = ...) -> None: ...

class AttackDescription(_message.Message):
    __slots__ = ("name", "description", "arguments")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    arguments: _containers.RepeatedCompositeFieldContainer[ArgumentDescription]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., arguments: _Optional[_Iterable[_Union[ArgumentDescription, _Mapping]]] = ...) -> None: ...

class ArgumentDescription(_message.Message):
    __slots__ = ("name", "type", "required", "default_value", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    required: bool
    default_value: str
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., required: _Optional[bool] = ..., default_value: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...
