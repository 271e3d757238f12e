"""Sampling conditions: 'age>=18', 'sex=Female', 'race in White,Black', 'dropoff>@pickup'."""

from __future__ import annotations

from synth.v1 import sampling_pb2

from synth_client.errors import SynthError

_OPERATORS = (">=", "<=", "!=", "=", ">", "<")


_COMPARISONS = {
    "<": sampling_pb2.COMPARISON_LESS,
    "<=": sampling_pb2.COMPARISON_LESS_EQUAL,
    ">": sampling_pb2.COMPARISON_GREATER,
    ">=": sampling_pb2.COMPARISON_GREATER_EQUAL,
    "=": sampling_pb2.COMPARISON_EQUAL,
    "!=": sampling_pb2.COMPARISON_NOT_EQUAL,
}


def parse_condition(text: str) -> sampling_pb2.Condition:
    """ "age>=18", "age<65", "sex=Female", "race in White,Black" → a Condition;
    "dropoff>@pickup" (``@`` names a column) compares two columns of a row;
    "handle=@@bob" is the value "@bob"."""
    if " in " in text:
        column, _, values = text.partition(" in ")
        return sampling_pb2.Condition(
            column=column.strip(), in_set=sampling_pb2.ValueSet(values=[v.strip() for v in values.split(",")])
        )
    for op in _OPERATORS:
        column, found, value = text.partition(op)
        if found:
            column, value = column.strip(), value.strip()
            if value.startswith("@@"):  # an escaped @: the value itself starts with one
                value = value[1:]
            elif value.startswith("@"):
                return sampling_pb2.Condition(
                    column=column,
                    compare=sampling_pb2.ColumnComparison(op=_COMPARISONS[op], other_column=value[1:].strip()),
                )
            if op == "=":
                return sampling_pb2.Condition(column=column, equals=value)
            if op == "!=":
                break
            bound = sampling_pb2.Range()
            if op.startswith(">"):
                bound.minimum, bound.minimum_exclusive = value, op == ">"
            else:
                bound.maximum, bound.maximum_exclusive = value, op == "<"
            return sampling_pb2.Condition(column=column, range=bound)
    raise SynthError(
        "INVALID_ARGUMENT",
        f"cannot read condition {text!r}: use COL=VALUE, COL>=N, COL<N, 'COL in A,B' or COL<=@OTHER_COL",
    )
