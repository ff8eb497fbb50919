"""What one deployment lets a task ask for, within the task schema's fixed bounds.

The schema (`task_spec`) caps the task's size in bytes, attacks, epochs and shadow
models for everyone; an orchestrator may allow less (`--max-task-bytes`,
`--max-attacks`, `--max-epochs`, `--max-shadow`). The size is checked before the
task is parsed, by the orchestrator and, against the schema's bound, by the client
before it sends the task. Every excess is a `TaskError` (INVALID_ARGUMENT) naming
the field, the value and the limit: the task is at fault, and sending it again
will not help.
"""

from __future__ import annotations

from dataclasses import dataclass

from privaudit.services.common import task_spec
from privaudit.services.common.errors import Problem, TaskError
from privaudit.v1 import orchestrator_pb2

DEFAULT_MAX_TASK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class TaskLimits:
    max_task_bytes: int = DEFAULT_MAX_TASK_BYTES
    max_attacks: int = task_spec.MAX_ATTACKS
    max_epochs: int = task_spec.MAX_EPOCHS
    max_shadow: int = task_spec.MAX_SHADOW

    def __post_init__(self) -> None:
        for name, value, bound in (("max_task_bytes", self.max_task_bytes, task_spec.MAX_TASK_BYTES),
                                   ("max_attacks", self.max_attacks, task_spec.MAX_ATTACKS),
                                   ("max_epochs", self.max_epochs, task_spec.MAX_EPOCHS),
                                   ("max_shadow", self.max_shadow, task_spec.MAX_SHADOW)):
            if value < 1 or (bound is not None and value > bound):
                within = f"1 to {bound}" if bound is not None else "at least 1"
                raise ValueError(f"--{name.replace('_', '-')}: must be {within}, got {value}")

    def check_size(self, request: orchestrator_pb2.SubmitAuditRequest) -> None:
        """Refuses a task (YAML text or typed) larger than `max_task_bytes`."""
        check_task_size(request, self.max_task_bytes, "this orchestrator accepts", " (its --max-task-bytes)")

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
            raise task_spec.refusal(problems)


def check_task_size(request: orchestrator_pb2.SubmitAuditRequest, limit: int, who: str, note: str = "") -> None:
    """Refuses the request's task (its YAML text's UTF-8 bytes, or the typed message's) when it is
    larger than `limit`: "the task is N bytes; {who} at most {limit}{note}"."""
    source = request.WhichOneof("task_source")
    size = len(request.task_yaml.encode()) if source == "task_yaml" else request.task.ByteSize()
    if source and size > limit:
        raise TaskError.at(source, f"the task is {size:,} bytes; {who} at most {limit:,}{note}")
