from privaudit.v1 import results_pb2 as _results_pb2
from privaudit.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetCapacityRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapacityResponse(_message.Message):
    __slots__ = ("slots", "running", "gpu", "device", "job_timeout_s", "job_memory_mb")
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    JOB_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    JOB_MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    slots: int
    running: int
    gpu: bool
    device: str
    job_timeout_s: float
    job_memory_mb: int
    def __init__(self, slots: _Optional[int] = ..., running: _Optional[int] = ..., gpu: _Optional[bool] = ..., device: _Optional[str] = ..., job_timeout_s: _Optional[float] = ..., job_memory_mb: _Optional[int] = ...) -> None: ...

class RunAttackRequest(_message.Message):
    __slots__ = ("task_id", "attack_index", "attack", "seed", "shadow", "score")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTACK_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTACK_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attack_index: int
    attack: _task_pb2.AttackSpec
    seed: int
    shadow: ShadowPart
    score: ScorePart
    def __init__(self, task_id: _Optional[str] = ..., attack_index: _Optional[int] = ..., attack: _Optional[_Union[_task_pb2.AttackSpec, _Mapping]] = ..., seed: _Optional[int] = ..., shadow: _Optional[_Union[ShadowPart, _Mapping]] = ..., score: _Optional[_Union[ScorePart, _Mapping]] = ...) -> None: ...

class ShadowPart(_message.Message):
    __slots__ = ("shadow_index", "stream_entry")
    SHADOW_INDEX_FIELD_NUMBER: _ClassVar[int]
    STREAM_ENTRY_FIELD_NUMBER: _ClassVar[int]
    shadow_index: int
    stream_entry: bool
    def __init__(self, shadow_index: _Optional[int] = ..., stream_entry: _Optional[bool] = ...) -> None: ...

class ScorePart(_message.Message):
    __slots__ = ("shadows",)
    SHADOWS_FIELD_NUMBER: _ClassVar[int]
    shadows: _containers.RepeatedCompositeFieldContainer[ShadowOutput]
    def __init__(self, shadows: _Optional[_Iterable[_Union[ShadowOutput, _Mapping]]] = ...) -> None: ...

class ShadowOutput(_message.Message):
    __slots__ = ("shadow_index", "cache_key", "num_rows", "num_classes", "logits", "in_mask", "timings", "entry")
    SHADOW_INDEX_FIELD_NUMBER: _ClassVar[int]
    CACHE_KEY_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    IN_MASK_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    shadow_index: int
    cache_key: str
    num_rows: int
    num_classes: int
    logits: bytes
    in_mask: bytes
    timings: _containers.RepeatedCompositeFieldContainer[_results_pb2.StageTiming]
    entry: StoredEntry
    def __init__(self, shadow_index: _Optional[int] = ..., cache_key: _Optional[str] = ..., num_rows: _Optional[int] = ..., num_classes: _Optional[int] = ..., logits: _Optional[bytes] = ..., in_mask: _Optional[bytes] = ..., timings: _Optional[_Iterable[_Union[_results_pb2.StageTiming, _Mapping]]] = ..., entry: _Optional[_Union[StoredEntry, _Mapping]] = ...) -> None: ...

class StoredEntry(_message.Message):
    __slots__ = ("size_bytes", "sha256")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    sha256: str
    def __init__(self, size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ShadowsMissing(_message.Message):
    __slots__ = ("shadow_index", "reason")
    SHADOW_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    shadow_index: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    def __init__(self, shadow_index: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ...) -> None: ...

class RunAttackResponse(_message.Message):
    __slots__ = ("progress", "result", "shadow", "shadows_missing", "entry_chunk")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    SHADOWS_MISSING_FIELD_NUMBER: _ClassVar[int]
    ENTRY_CHUNK_FIELD_NUMBER: _ClassVar[int]
    progress: _results_pb2.JobProgress
    result: _results_pb2.AttackResult
    shadow: ShadowOutput
    shadows_missing: ShadowsMissing
    entry_chunk: EntryChunk
    def __init__(self, progress: _Optional[_Union[_results_pb2.JobProgress, _Mapping]] = ..., result: _Optional[_Union[_results_pb2.AttackResult, _Mapping]] = ..., shadow: _Optional[_Union[ShadowOutput, _Mapping]] = ..., shadows_missing: _Optional[_Union[ShadowsMissing, _Mapping]] = ..., entry_chunk: _Optional[_Union[EntryChunk, _Mapping]] = ...) -> None: ...

class EntryChunk(_message.Message):
    __slots__ = ("cache_key", "offset", "data", "entry")
    CACHE_KEY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    cache_key: str
    offset: int
    data: bytes
    entry: StoredEntry
    def __init__(self, cache_key: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., entry: _Optional[_Union[StoredEntry, _Mapping]] = ...) -> None: ...

class PutEntriesRequest(_message.Message):
    __slots__ = ("chunk",)
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    chunk: EntryChunk
    def __init__(self, chunk: _Optional[_Union[EntryChunk, _Mapping]] = ...) -> None: ...

class PutEntriesResponse(_message.Message):
    __slots__ = ("cache_key",)
    CACHE_KEY_FIELD_NUMBER: _ClassVar[int]
    cache_key: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cache_key: _Optional[_Iterable[str]] = ...) -> None: ...
