"""Protobuf messages as plain JSON-ready data, for `status --json` and `list --json`.

Unlike `json_format.MessageToDict` (proto3's JSON mapping): 64-bit integers stay numbers, every
field is present (a default 0, "" or false as itself, an unset message as null), enum values are
their names without the enum's prefix (`SUCCEEDED`, not `AUDIT_STATE_SUCCEEDED`; a risk level's
zero is `UNRATED`, as in the typed report), timestamps are ISO 8601 UTC, and a float that is not
finite is null (JSON has no NaN).
"""

from __future__ import annotations

import base64
import math
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

# An enum's zero value whose word is not UNSPECIFIED, by the enum's full name.
_ZERO_WORDS = {"privaudit.v1.RiskLevel": "UNRATED"}


def message_data(message: Message) -> dict[str, Any] | str:
    """Every field of `message` by its proto name (a Timestamp: its ISO 8601 text)."""
    if message.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        return message.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            data[field.name] = {str(key): _value(value_field, item) for key, item in value.items()}
        elif field.is_repeated:
            data[field.name] = [_value(field, item) for item in value]
        elif field.has_presence and not message.HasField(field.name):
            data[field.name] = None
        else:
            data[field.name] = _value(field, value)
    return data


def enum_word(enum: EnumDescriptor, number: int) -> str:
    """The value's name without the enum's prefix, e.g. `HIGH` for RISK_LEVEL_HIGH."""
    if number == 0 and enum.full_name in _ZERO_WORDS:
        return _ZERO_WORDS[enum.full_name]
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)  # a value newer than this client's protos
    prefix = enum.values[0].name.removesuffix("UNSPECIFIED")
    return value.name.removeprefix(prefix)


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_data(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_word(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_map(field: FieldDescriptor) -> bool:
    return (field.type == FieldDescriptor.TYPE_MESSAGE and field.is_repeated
            and field.message_type.GetOptions().map_entry)
