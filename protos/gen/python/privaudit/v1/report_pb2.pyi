import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RiskLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_LEVEL_UNSPECIFIED: _ClassVar[RiskLevel]
    RISK_LEVEL_LOW: _ClassVar[RiskLevel]
    RISK_LEVEL_MIDDLE: _ClassVar[RiskLevel]
    RISK_LEVEL_HIGH: _ClassVar[RiskLevel]

class ReportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPORT_FORMAT_UNSPECIFIED: _ClassVar[ReportFormat]
    REPORT_FORMAT_TEXT: _ClassVar[ReportFormat]
    REPORT_FORMAT_JSON: _ClassVar[ReportFormat]
    REPORT_FORMAT_HTML: _ClassVar[ReportFormat]
RISK_LEVEL_UNSPECIFIED: RiskLevel
RISK_LEVEL_LOW: RiskLevel
RISK_LEVEL_MIDDLE: RiskLevel
RISK_LEVEL_HIGH: RiskLevel
REPORT_FORMAT_UNSPECIFIED: ReportFormat
REPORT_FORMAT_TEXT: ReportFormat
REPORT_FORMAT_JSON: ReportFormat
REPORT_FORMAT_HTML: ReportFormat

class ReportSummary(_message.Message):
    __slots__ = ("overall_risk", "attacks", "failed_attacks")
    OVERALL_RISK_FIELD_NUMBER: _ClassVar[int]
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    FAILED_ATTACKS_FIELD_NUMBER: _ClassVar[int]
    overall_risk: RiskLevel
    attacks: _containers.RepeatedCompositeFieldContainer[AttackAssessment]
    failed_attacks: int
    def __init__(self, overall_risk: _Optional[_Union[RiskLevel, str]] = ..., attacks: _Optional[_Iterable[_Union[AttackAssessment, _Mapping]]] = ..., failed_attacks: _Optional[int] = ...) -> None: ...

class AttackAssessment(_message.Message):
    __slots__ = ("attack_index", "attack_name", "risk", "reason")
    ATTACK_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTACK_NAME_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    attack_index: int
    attack_name: str
    risk: RiskLevel
    reason: str
    def __init__(self, attack_index: _Optional[int] = ..., attack_name: _Optional[str] = ..., risk: _Optional[_Union[RiskLevel, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportChunk(_message.Message):
    __slots__ = ("format", "data", "last")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    format: ReportFormat
    data: bytes
    last: bool
    def __init__(self, format: _Optional[_Union[ReportFormat, str]] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...

class ReportProvenance(_message.Message):
    __slots__ = ("seed", "task_digest", "generated_at")
    SEED_FIELD_NUMBER: _ClassVar[int]
    TASK_DIGEST_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    seed: int
    task_digest: str
    generated_at: _timestamp_pb2.Timestamp
    def __init__(self, seed: _Optional[int] = ..., task_digest: _Optional[str] = ..., generated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
