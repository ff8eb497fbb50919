"""What one deployment lets a task ask for, within the task schema's fixed bounds.

The schema (`task_spec`) caps attacks, epochs and shadow models for everyone; an
orchestrator may allow less (`--max-attacks`, `--max-epochs`, `--max-shadow`) and
caps the task's size in bytes, checked before the task is parsed. Every excess is
a `TaskError` (INVALID_ARGUMENT) naming the field, the value and the limit: the
task is at fault, and sending it again will not help.
"""

from __future__ import annotations

from dataclasses import dataclass

from privaudit.v1 import orchestrator_pb2
from services.common import task_spec
from services.common.errors import Problem, TaskError

DEFAULT_MAX_TASK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TaskLimits:
    max_task_bytes: int = DEFAULT_MAX_TASK_BYTES
    max_attacks: int = task_spec.MAX_ATTACKS
    max_epochs: int = task_spec.MAX_EPOCHS
    max_shadow: int = task_spec.MAX_SHADOW

    def __post_init__(self) -> None:
        for name, value, bound in (("max_task_bytes", self.max_task_bytes, None),
                                   ("max_attacks", self.max_attacks, task_spec.MAX_ATTACKS),
                                   ("max_epochs", self.max_epochs, task_spec.MAX_EPOCHS),
                                   ("max_shadow", self.max_shadow, task_spec.MAX_SHADOW)):
            if value < 1 or (bound is not None and value > bound):
                within = f"1 to {bound}" if bound is not None else "at least 1"
                raise ValueError(f"--{name.replace('_', '-')}: must be {within}, got {value}")

    def check_size(self, request: orchestrator_pb2.SubmitAuditRequest) -> None:
        """Refuses a task (YAML text or typed) larger than `max_task_bytes`."""
        source = request.WhichOneof("task_source")
        size = len(request.task_yaml.encode()) if source == "task_yaml" else request.task.ByteSize()
        if source and size > self.max_task_bytes:
            raise TaskError.at(source, f"the task is {size:,} bytes; this orchestrator accepts at most "
                                       f"{self.max_task_bytes:,} (its --max-task-bytes)")

    def check(self, spec: task_spec.TaskSpec) -> None:
        """Refuses a validated task that asks for more than this deployment allows, naming
        every field over its limit."""
        if len(spec.attacks) > self.max_attacks:
            raise TaskError.at("attacks", f"the task has {len(spec.attacks)} attacks; this orchestrator runs at "
                                          f"most {self.max_attacks} per task (its --max-attacks)")
        bounded = {"shadow_epoch": ("max_epochs", self.max_epochs), "classifier_epoch": ("max_epochs", self.max_epochs),
                   "epochs": ("max_epochs", self.max_epochs), "num_shadow": ("max_shadow", self.max_shadow)}
        problems = [
            Problem(f"attacks[{index}].args.{field}", f"{value} is more than this orchestrator allows: at most "
                                                      f"{limit} (its --{name.replace('_', '-')})")
            for index, attack in enumerate(spec.attacks)
            for field, (name, limit) in bounded.items()
            if (value := getattr(attack, field, None)) is not None and value > limit
        ]
        if problems:
            raise TaskError(problems)
