"""What the worker's serving process knows of a job without loading the job's code (and so
Paddle, which only the job launcher and the jobs it forks import): the name of the job's attack,
and the exception that a cancelled job ends with."""

from __future__ import annotations

from privaudit.services.common import task_spec
from privaudit.v1 import task_pb2

_NAMES_BY_PROTO_FIELD = {cls.proto_field: cls.name for cls in task_spec.ATTACKS.values()}


class JobCancelled(Exception):
    """The job's caller went away; raised at the next progress point."""


def attack_name(spec: task_pb2.AttackSpec) -> str:
    """The YAML name of the attack a spec holds, or "" when it holds none."""
    case = spec.WhichOneof("args")
    return _NAMES_BY_PROTO_FIELD[case] if case else ""
