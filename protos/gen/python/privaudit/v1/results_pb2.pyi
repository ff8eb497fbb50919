from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttackStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTACK_STATUS_UNSPECIFIED: _ClassVar[AttackStatus]
    ATTACK_STATUS_SUCCEEDED: _ClassVar[AttackStatus]
    ATTACK_STATUS_FAILED: _ClassVar[AttackStatus]

class Fault(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAULT_UNSPECIFIED: _ClassVar[Fault]
    FAULT_TASK: _ClassVar[Fault]
    FAULT_INFRASTRUCTURE: _ClassVar[Fault]
    FAULT_SERVICE: _ClassVar[Fault]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_QUEUED: _ClassVar[Stage]
    STAGE_LOAD: _ClassVar[Stage]
    STAGE_PREDICT: _ClassVar[Stage]
    STAGE_TRAIN_SHADOW: _ClassVar[Stage]
    STAGE_FIT_ATTACK: _ClassVar[Stage]
    STAGE_SCORE: _ClassVar[Stage]
ATTACK_STATUS_UNSPECIFIED: AttackStatus
ATTACK_STATUS_SUCCEEDED: AttackStatus
ATTACK_STATUS_FAILED: AttackStatus
FAULT_UNSPECIFIED: Fault
FAULT_TASK: Fault
FAULT_INFRASTRUCTURE: Fault
FAULT_SERVICE: Fault
STAGE_UNSPECIFIED: Stage
STAGE_QUEUED: Stage
STAGE_LOAD: Stage
STAGE_PREDICT: Stage
STAGE_TRAIN_SHADOW: Stage
STAGE_FIT_ATTACK: Stage
STAGE_SCORE: Stage

class AttackResult(_message.Message):
    __slots__ = ("attack_index", "attack_name", "status", "error", "target_model", "datasets", "metrics", "roc", "timings", "most_exposed", "score_histogram", "warnings", "per_class", "record_scores", "device", "target_queries")
    ATTACK_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTACK_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ROC_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    MOST_EXPOSED_FIELD_NUMBER: _ClassVar[int]
    SCORE_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    RECORD_SCORES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    TARGET_QUERIES_FIELD_NUMBER: _ClassVar[int]
    attack_index: int
    attack_name: str
    status: AttackStatus
    error: AttackError
    target_model: ModelSummary
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetSummary]
    metrics: Metrics
    roc: _containers.RepeatedCompositeFieldContainer[RocPoint]
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    most_exposed: _containers.RepeatedCompositeFieldContainer[ExposedRecord]
    score_histogram: ScoreHistogram
    warnings: _containers.RepeatedScalarFieldContainer[str]
    per_class: _containers.RepeatedCompositeFieldContainer[ClassMetrics]
    record_scores: RecordScores
    device: str
    target_queries: int
    def __init__(self, attack_index: _Optional[int] = ..., attack_name: _Optional[str] = ..., status: _Optional[_Union[AttackStatus, str]] = ..., error: _Optional[_Union[AttackError, _Mapping]] = ..., target_model: _Optional[_Union[ModelSummary, _Mapping]] = ..., datasets: _Optional[_Iterable[_Union[DatasetSummary, _Mapping]]] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., roc: _Optional[_Iterable[_Union[RocPoint, _Mapping]]] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., most_exposed: _Optional[_Iterable[_Union[ExposedRecord, _Mapping]]] = ..., score_histogram: _Optional[_Union[ScoreHistogram, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., per_class: _Optional[_Iterable[_Union[ClassMetrics, _Mapping]]] = ..., record_scores: _Optional[_Union[RecordScores, _Mapping]] = ..., device: _Optional[str] = ..., target_queries: _Optional[int] = ...) -> None: ...

class AttackError(_message.Message):
    __slots__ = ("code", "field", "message", "fault", "retryable")
    CODE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    code: str
    field: str
    message: str
    fault: Fault
    retryable: bool
    def __init__(self, code: _Optional[str] = ..., field: _Optional[str] = ..., message: _Optional[str] = ..., fault: _Optional[_Union[Fault, str]] = ..., retryable: _Optional[bool] = ...) -> None: ...

class ModelSummary(_message.Message):
    __slots__ = ("name", "path", "train_acc", "test_acc", "digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACC_FIELD_NUMBER: _ClassVar[int]
    TEST_ACC_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    train_acc: float
    test_acc: float
    digest: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., train_acc: _Optional[float] = ..., test_acc: _Optional[float] = ..., digest: _Optional[str] = ...) -> None: ...

class DatasetSummary(_message.Message):
    __slots__ = ("name", "path", "is_member_dataset", "length", "role", "digest")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    IS_MEMBER_DATASET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    is_member_dataset: bool
    length: int
    role: str
    digest: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., is_member_dataset: _Optional[bool] = ..., length: _Optional[int] = ..., role: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("num_members", "num_non_members", "accuracy", "precision", "recall", "auc", "advantage", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "decision_threshold", "auc_interval", "tpr_at_1pct_fpr_interval", "tpr_at_0_1pct_fpr_interval", "auc_p_value", "tpr_at_1pct_fpr_p_value", "tpr_at_0_1pct_fpr_p_value", "threshold_source")
    NUM_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NUM_NON_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    AUC_FIELD_NUMBER: _ClassVar[int]
    ADVANTAGE_FIELD_NUMBER: _ClassVar[int]
    TPR_AT_1PCT_FPR_FIELD_NUMBER: _ClassVar[int]
    TPR_AT_0_1PCT_FPR_FIELD_NUMBER: _ClassVar[int]
    DECISION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AUC_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TPR_AT_1PCT_FPR_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TPR_AT_0_1PCT_FPR_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    AUC_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    TPR_AT_1PCT_FPR_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    TPR_AT_0_1PCT_FPR_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    num_members: int
    num_non_members: int
    accuracy: float
    precision: float
    recall: float
    auc: float
    advantage: float
    tpr_at_1pct_fpr: float
    tpr_at_0_1pct_fpr: float
    decision_threshold: float
    auc_interval: Interval
    tpr_at_1pct_fpr_interval: Interval
    tpr_at_0_1pct_fpr_interval: Interval
    auc_p_value: float
    tpr_at_1pct_fpr_p_value: float
    tpr_at_0_1pct_fpr_p_value: float
    threshold_source: str
    def __init__(self, num_members: _Optional[int] = ..., num_non_members: _Optional[int] = ..., accuracy: _Optional[float] = ..., precision: _Optional[float] = ..., recall: _Optional[float] = ..., auc: _Optional[float] = ..., advantage: _Optional[float] = ..., tpr_at_1pct_fpr: _Optional[float] = ..., tpr_at_0_1pct_fpr: _Optional[float] = ..., decision_threshold: _Optional[float] = ..., auc_interval: _Optional[_Union[Interval, _Mapping]] = ..., tpr_at_1pct_fpr_interval: _Optional[_Union[Interval, _Mapping]] = ..., tpr_at_0_1pct_fpr_interval: _Optional[_Union[Interval, _Mapping]] = ..., auc_p_value: _Optional[float] = ..., tpr_at_1pct_fpr_p_value: _Optional[float] = ..., tpr_at_0_1pct_fpr_p_value: _Optional[float] = ..., threshold_source: _Optional[str] = ...) -> None: ...

class Interval(_message.Message):
    __slots__ = ("lower", "upper")
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    lower: float
    upper: float
    def __init__(self, lower: _Optional[float] = ..., upper: _Optional[float] = ...) -> None: ...

class ClassMetrics(_message.Message):
    __slots__ = ("label", "num_members", "num_non_members", "auc", "auc_interval", "tpr_at_1pct_fpr")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    NUM_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NUM_NON_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    AUC_FIELD_NUMBER: _ClassVar[int]
    AUC_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TPR_AT_1PCT_FPR_FIELD_NUMBER: _ClassVar[int]
    label: int
    num_members: int
    num_non_members: int
    auc: float
    auc_interval: Interval
    tpr_at_1pct_fpr: float
    def __init__(self, label: _Optional[int] = ..., num_members: _Optional[int] = ..., num_non_members: _Optional[int] = ..., auc: _Optional[float] = ..., auc_interval: _Optional[_Union[Interval, _Mapping]] = ..., tpr_at_1pct_fpr: _Optional[float] = ...) -> None: ...

class RecordScores(_message.Message):
    __slots__ = ("members", "non_members", "member_labels", "non_member_labels", "member_evaluated", "non_member_evaluated")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NON_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_LABELS_FIELD_NUMBER: _ClassVar[int]
    NON_MEMBER_LABELS_FIELD_NUMBER: _ClassVar[int]
    MEMBER_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    NON_MEMBER_EVALUATED_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedScalarFieldContainer[float]
    non_members: _containers.RepeatedScalarFieldContainer[float]
    member_labels: _containers.RepeatedScalarFieldContainer[int]
    non_member_labels: _containers.RepeatedScalarFieldContainer[int]
    member_evaluated: _containers.RepeatedScalarFieldContainer[bool]
    non_member_evaluated: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, members: _Optional[_Iterable[float]] = ..., non_members: _Optional[_Iterable[float]] = ..., member_labels: _Optional[_Iterable[int]] = ..., non_member_labels: _Optional[_Iterable[int]] = ..., member_evaluated: _Optional[_Iterable[bool]] = ..., non_member_evaluated: _Optional[_Iterable[bool]] = ...) -> None: ...

class RocPoint(_message.Message):
    __slots__ = ("fpr", "tpr")
    FPR_FIELD_NUMBER: _ClassVar[int]
    TPR_FIELD_NUMBER: _ClassVar[int]
    fpr: float
    tpr: float
    def __init__(self, fpr: _Optional[float] = ..., tpr: _Optional[float] = ...) -> None: ...

class ExposedRecord(_message.Message):
    __slots__ = ("index", "score")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    score: float
    def __init__(self, index: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class ScoreHistogram(_message.Message):
    __slots__ = ("edges", "member_counts", "non_member_counts")
    EDGES_FIELD_NUMBER: _ClassVar[int]
    MEMBER_COUNTS_FIELD_NUMBER: _ClassVar[int]
    NON_MEMBER_COUNTS_FIELD_NUMBER: _ClassVar[int]
    edges: _containers.RepeatedScalarFieldContainer[float]
    member_counts: _containers.RepeatedScalarFieldContainer[int]
    non_member_counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, edges: _Optional[_Iterable[float]] = ..., member_counts: _Optional[_Iterable[int]] = ..., non_member_counts: _Optional[_Iterable[int]] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    seconds: float
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., seconds: _Optional[float] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("attack_index", "stage", "fraction", "message")
    ATTACK_INDEX_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    attack_index: int
    stage: Stage
    fraction: float
    message: str
    def __init__(self, attack_index: _Optional[int] = ..., stage: _Optional[_Union[Stage, str]] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...
