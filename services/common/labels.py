"""Enum labels read from the proto descriptors, not hand-written tables: a
value added to a proto enum gets its label everywhere at once.

``VERDICT_NOT_APPLICABLE`` in enum ``Verdict`` is labelled "not_applicable":
the name without the prefix all the enum's names share, lower-cased.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper


@cache
def _prefix(descriptor: EnumDescriptor) -> str:
    names = [value.name for value in descriptor.values]
    shared = os.path.commonprefix(names)
    return shared[: shared.rfind("_") + 1]  # whole words only: "VERDICT_", never "VERDICT_P"


def label(enum: EnumTypeWrapper, value: int) -> str:
    """``value``'s label ("pass" for VERDICT_PASS); "" for a value the enum lacks."""
    descriptor = enum.DESCRIPTOR
    entry = descriptor.values_by_number.get(value)
    return entry.name.removeprefix(_prefix(descriptor)).lower() if entry is not None else ""


def value(enum: EnumTypeWrapper, text: str) -> Any:
    """The number for a label ("pass" → VERDICT_PASS); KeyError naming the choices.
    (Any: each generated enum has its own value type, an int.)"""
    descriptor = enum.DESCRIPTOR
    name = _prefix(descriptor) + text.upper()
    entry = descriptor.values_by_name.get(name)
    if entry is None:
        raise KeyError(f"{text!r} is not a {descriptor.name}; use one of {', '.join(labels(enum))}")
    return int(entry.number)


def labels(enum: EnumTypeWrapper, *, unspecified: bool = False) -> list[str]:
    """Every label in number order; without the UNSPECIFIED zero value unless asked."""
    out = [label(enum, v.number) for v in enum.DESCRIPTOR.values]
    return out if unspecified else [x for x in out if x != "unspecified"]
