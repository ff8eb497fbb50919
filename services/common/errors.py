"""Errors that name the task field at fault, and their mapping to gRPC statuses.

A `TaskError` travels as INVALID_ARGUMENT with a `google.rpc.BadRequest`
detail listing each offending field, so typed clients can read the fields and
people can read the message.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a task: the field (e.g. `attacks[0].args.topk`) and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class TaskError(ValueError):
    """The task, or a file it names, is wrong; retrying will not help."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    @classmethod
    def at(cls, field: str, message: str) -> TaskError:
        return cls(Problem(field, message))

    @property
    def field(self) -> str:
        """The first offending field, for callers that report one."""
        return self.problems[0].field

    def to_status(self) -> grpc.Status:
        """INVALID_ARGUMENT with a BadRequest detail per problem."""
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=p.field, description=p.message)
                for p in self.problems
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        return rpc_status.to_status(
            status_pb2.Status(
                code=code_pb2.INVALID_ARGUMENT, message=f"invalid task: {self}", details=[detail]
            )
        )


def problems_from_status(error: grpc.RpcError) -> list[Problem]:
    """The field violations in an INVALID_ARGUMENT error, or one problem with its message."""
    status = rpc_status.from_call(error)
    problems = []
    for detail in status.details if status else []:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            problems += [Problem(v.field, v.description) for v in bad_request.field_violations]
    return problems or [Problem("", error.details() or str(error.code()))]
