from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttackType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTACK_TYPE_UNSPECIFIED: _ClassVar[AttackType]
    ATTACK_TYPE_MEMBERSHIP_INFERENCE: _ClassVar[AttackType]

class Augmentation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUGMENTATION_UNSPECIFIED: _ClassVar[Augmentation]
    AUGMENTATION_ROTATION: _ClassVar[Augmentation]
    AUGMENTATION_TRANSLATION: _ClassVar[Augmentation]
ATTACK_TYPE_UNSPECIFIED: AttackType
ATTACK_TYPE_MEMBERSHIP_INFERENCE: AttackType
AUGMENTATION_UNSPECIFIED: Augmentation
AUGMENTATION_ROTATION: Augmentation
AUGMENTATION_TRANSLATION: Augmentation

class Task(_message.Message):
    __slots__ = ("attacks", "seed")
    ATTACKS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    attacks: _containers.RepeatedCompositeFieldContainer[AttackSpec]
    seed: int
    def __init__(self, attacks: _Optional[_Iterable[_Union[AttackSpec, _Mapping]]] = ..., seed: _Optional[int] = ...) -> None: ...

class AttackSpec(_message.Message):
    __slots__ = ("type", "baseline", "ml_leak", "label_only", "loss", "lira", "rmia")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    ML_LEAK_FIELD_NUMBER: _ClassVar[int]
    LABEL_ONLY_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LIRA_FIELD_NUMBER: _ClassVar[int]
    RMIA_FIELD_NUMBER: _ClassVar[int]
    type: AttackType
    baseline: BaselineArgs
    ml_leak: MlLeakArgs
    label_only: LabelOnlyArgs
    loss: LossArgs
    lira: LiraArgs
    rmia: RmiaArgs
    def __init__(self, type: _Optional[_Union[AttackType, str]] = ..., baseline: _Optional[_Union[BaselineArgs, _Mapping]] = ..., ml_leak: _Optional[_Union[MlLeakArgs, _Mapping]] = ..., label_only: _Optional[_Union[LabelOnlyArgs, _Mapping]] = ..., loss: _Optional[_Union[LossArgs, _Mapping]] = ..., lira: _Optional[_Union[LiraArgs, _Mapping]] = ..., rmia: _Optional[_Union[RmiaArgs, _Mapping]] = ...) -> None: ...

class DatasetPair(_message.Message):
    __slots__ = ("members", "non_members")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NON_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: str
    non_members: str
    def __init__(self, members: _Optional[str] = ..., non_members: _Optional[str] = ...) -> None: ...

class BaselineArgs(_message.Message):
    __slots__ = ("test_datasets", "target_model", "target_datasets", "target_endpoint")
    TEST_DATASETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_DATASETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    test_datasets: DatasetPair
    target_model: str
    target_datasets: DatasetPair
    target_endpoint: ModelEndpoint
    def __init__(self, test_datasets: _Optional[_Union[DatasetPair, _Mapping]] = ..., target_model: _Optional[str] = ..., target_datasets: _Optional[_Union[DatasetPair, _Mapping]] = ..., target_endpoint: _Optional[_Union[ModelEndpoint, _Mapping]] = ...) -> None: ...

class MlLeakArgs(_message.Message):
    __slots__ = ("target_datasets", "target_model", "shadow_model", "shadow_datasets", "shadow_epoch", "shadow_lr", "classifier_epoch", "classifier_lr", "batch_size", "topk", "target_endpoint")
    TARGET_DATASETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODEL_FIELD_NUMBER: _ClassVar[int]
    SHADOW_MODEL_FIELD_NUMBER: _ClassVar[int]
    SHADOW_DATASETS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SHADOW_LR_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_LR_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TOPK_FIELD_NUMBER: _ClassVar[int]
    TARGET_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    target_datasets: DatasetPair
    target_model: str
    shadow_model: str
    shadow_datasets: DatasetPair
    shadow_epoch: int
    shadow_lr: float
    classifier_epoch: int
    classifier_lr: float
    batch_size: int
    topk: int
    target_endpoint: ModelEndpoint
    def __init__(self, target_datasets: _Optional[_Union[DatasetPair, _Mapping]] = ..., target_model: _Optional[str] = ..., shadow_model: _Optional[str] = ..., shadow_datasets: _Optional[_Union[DatasetPair, _Mapping]] = ..., shadow_epoch: _Optional[int] = ..., shadow_lr: _Optional[float] = ..., classifier_epoch: _Optional[int] = ..., classifier_lr: _Optional[float] = ..., batch_size: _Optional[int] = ..., topk: _Optional[int] = ..., target_endpoint: _Optional[_Union[ModelEndpoint, _Mapping]] = ...) -> None: ...

class LabelOnlyArgs(_message.Message):
    __slots__ = ("target_datasets", "target_model", "shadow_model", "shadow_datasets", "shadow_epoch", "shadow_lr", "classifier_epoch", "classifier_lr", "batch_size", "attack_type", "r", "d", "target_endpoint")
    TARGET_DATASETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODEL_FIELD_NUMBER: _ClassVar[int]
    SHADOW_MODEL_FIELD_NUMBER: _ClassVar[int]
    SHADOW_DATASETS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SHADOW_LR_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_LR_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    ATTACK_TYPE_FIELD_NUMBER: _ClassVar[int]
    R_FIELD_NUMBER: _ClassVar[int]
    D_FIELD_NUMBER: _ClassVar[int]
    TARGET_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    target_datasets: DatasetPair
    target_model: str
    shadow_model: str
    shadow_datasets: DatasetPair
    shadow_epoch: int
    shadow_lr: float
    classifier_epoch: int
    classifier_lr: float
    batch_size: int
    attack_type: Augmentation
    r: int
    d: int
    target_endpoint: ModelEndpoint
    def __init__(self, target_datasets: _Optional[_Union[DatasetPair, _Mapping]] = ..., target_model: _Optional[str] = ..., shadow_model: _Optional[str] = ..., shadow_datasets: _Optional[_Union[DatasetPair, _Mapping]] = ..., shadow_epoch: _Optional[int] = ..., shadow_lr: _Optional[float] = ..., classifier_epoch: _Optional[int] = ..., classifier_lr: _Optional[float] = ..., batch_size: _Optional[int] = ..., attack_type: _Optional[_Union[Augmentation, str]] = ..., r: _Optional[int] = ..., d: _Optional[int] = ..., target_endpoint: _Optional[_Union[ModelEndpoint, _Mapping]] = ...) -> None: ...

class LossArgs(_message.Message):
    __slots__ = ("target_datasets", "target_model", "batch_size", "population_datasets", "target_endpoint")
    TARGET_DATASETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODEL_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    POPULATION_DATASETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    target_datasets: DatasetPair
    target_model: str
    batch_size: int
    population_datasets: _containers.RepeatedScalarFieldContainer[str]
    target_endpoint: ModelEndpoint
    def __init__(self, target_datasets: _Optional[_Union[DatasetPair, _Mapping]] = ..., target_model: _Optional[str] = ..., batch_size: _Optional[int] = ..., population_datasets: _Optional[_Iterable[str]] = ..., target_endpoint: _Optional[_Union[ModelEndpoint, _Mapping]] = ...) -> None: ...

class LiraArgs(_message.Message):
    __slots__ = ("target_datasets", "target_model", "population_datasets", "num_shadow", "online", "epochs", "lr", "batch_size", "seed", "fixed_variance", "augment", "shadow_train_size", "target_endpoint")
    TARGET_DATASETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODEL_FIELD_NUMBER: _ClassVar[int]
    POPULATION_DATASETS_FIELD_NUMBER: _ClassVar[int]
    NUM_SHADOW_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    FIXED_VARIANCE_FIELD_NUMBER: _ClassVar[int]
    AUGMENT_FIELD_NUMBER: _ClassVar[int]
    SHADOW_TRAIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    target_datasets: DatasetPair
    target_model: str
    population_datasets: _containers.RepeatedScalarFieldContainer[str]
    num_shadow: int
    online: bool
    epochs: int
    lr: float
    batch_size: int
    seed: int
    fixed_variance: bool
    augment: bool
    shadow_train_size: int
    target_endpoint: ModelEndpoint
    def __init__(self, target_datasets: _Optional[_Union[DatasetPair, _Mapping]] = ..., target_model: _Optional[str] = ..., population_datasets: _Optional[_Iterable[str]] = ..., num_shadow: _Optional[int] = ..., online: _Optional[bool] = ..., epochs: _Optional[int] = ..., lr: _Optional[float] = ..., batch_size: _Optional[int] = ..., seed: _Optional[int] = ..., fixed_variance: _Optional[bool] = ..., augment: _Optional[bool] = ..., shadow_train_size: _Optional[int] = ..., target_endpoint: _Optional[_Union[ModelEndpoint, _Mapping]] = ...) -> None: ...

class RmiaArgs(_message.Message):
    __slots__ = ("target_datasets", "target_model", "population_datasets", "num_shadow", "online", "epochs", "lr", "batch_size", "seed", "a", "gamma", "num_population", "shadow_train_size", "target_endpoint")
    TARGET_DATASETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODEL_FIELD_NUMBER: _ClassVar[int]
    POPULATION_DATASETS_FIELD_NUMBER: _ClassVar[int]
    NUM_SHADOW_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    NUM_POPULATION_FIELD_NUMBER: _ClassVar[int]
    SHADOW_TRAIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    TARGET_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    target_datasets: DatasetPair
    target_model: str
    population_datasets: _containers.RepeatedScalarFieldContainer[str]
    num_shadow: int
    online: bool
    epochs: int
    lr: float
    batch_size: int
    seed: int
    a: float
    gamma: float
    num_population: int
    shadow_train_size: int
    target_endpoint: ModelEndpoint
    def __init__(self, target_datasets: _Optional[_Union[DatasetPair, _Mapping]] = ..., target_model: _Optional[str] = ..., population_datasets: _Optional[_Iterable[str]] = ..., num_shadow: _Optional[int] = ..., online: _Optional[bool] = ..., epochs: _Optional[int] = ..., lr: _Optional[float] = ..., batch_size: _Optional[int] = ..., seed: _Optional[int] = ..., a: _Optional[float] = ..., gamma: _Optional[float] = ..., num_population: _Optional[int] = ..., shadow_train_size: _Optional[int] = ..., target_endpoint: _Optional[_Union[ModelEndpoint, _Mapping]] = ...) -> None: ...

class ModelEndpoint(_message.Message):
    __slots__ = ("endpoint", "model", "version", "tls_ca", "token_file", "output", "output_name", "max_queries", "deadline_s", "architecture")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TLS_CA_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FILE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_QUERIES_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    model: str
    version: str
    tls_ca: str
    token_file: str
    output: str
    output_name: str
    max_queries: int
    deadline_s: float
    architecture: str
    def __init__(self, endpoint: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., tls_ca: _Optional[str] = ..., token_file: _Optional[str] = ..., output: _Optional[str] = ..., output_name: _Optional[str] = ..., max_queries: _Optional[int] = ..., deadline_s: _Optional[float] = ..., architecture: _Optional[str] = ...) -> None: ...
