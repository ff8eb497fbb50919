from privaudit.v1 import report_pb2 as _report_pb2
from privaudit.v1 import results_pb2 as _results_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BuildReportRequest(_message.Message):
    __slots__ = ("task_id", "results", "format", "provenance", "baseline_report_json", "also_formats")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    ALSO_FORMATS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    results: _containers.RepeatedCompositeFieldContainer[_results_pb2.AttackResult]
    format: _report_pb2.ReportFormat
    provenance: _report_pb2.ReportProvenance
    baseline_report_json: str
    also_formats: _containers.RepeatedScalarFieldContainer[_report_pb2.ReportFormat]
    def __init__(self, task_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[_results_pb2.AttackResult, _Mapping]]] = ..., format: _Optional[_Union[_report_pb2.ReportFormat, str]] = ..., provenance: _Optional[_Union[_report_pb2.ReportProvenance, _Mapping]] = ..., baseline_report_json: _Optional[str] = ..., also_formats: _Optional[_Iterable[_Union[_report_pb2.ReportFormat, str]]] = ...) -> None: ...

class BuildReportResponse(_message.Message):
    __slots__ = ("summary", "chunk")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    summary: _report_pb2.ReportSummary
    chunk: _report_pb2.ReportChunk
    def __init__(self, summary: _Optional[_Union[_report_pb2.ReportSummary, _Mapping]] = ..., chunk: _Optional[_Union[_report_pb2.ReportChunk, _Mapping]] = ...) -> None: ...
