from privaudit.v1 import results_pb2 as _results_pb2
from privaudit.v1 import task_pb2 as _task_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetCapacityRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapacityResponse(_message.Message):
    __slots__ = ("slots", "running", "gpu", "device")
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    slots: int
    running: int
    gpu: bool
    device: str
    def __init__(self, slots: _Optional[int] = ..., running: _Optional[int] = ..., gpu: _Optional[bool] = ..., device: _Optional[str] = ...) -> None: ...

class RunAttackRequest(_message.Message):
    __slots__ = ("task_id", "attack_index", "attack", "seed")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTACK_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attack_index: int
    attack: _task_pb2.AttackSpec
    seed: int
    def __init__(self, task_id: _Optional[str] = ..., attack_index: _Optional[int] = ..., attack: _Optional[_Union[_task_pb2.AttackSpec, _Mapping]] = ..., seed: _Optional[int] = ...) -> None: ...

class RunAttackResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: _results_pb2.JobProgress
    result: _results_pb2.AttackResult
    def __init__(self, progress: _Optional[_Union[_results_pb2.JobProgress, _Mapping]] = ..., result: _Optional[_Union[_results_pb2.AttackResult, _Mapping]] = ...) -> None: ...
