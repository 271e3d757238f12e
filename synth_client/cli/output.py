"""Printing: tables, JSON, datasets and the upload progress bar."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from synth.v1 import common_pb2

from services.common import labels


def _progress_bar(total: int) -> Callable[[int, int], None]:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc="upload", leave=False, disable=None)

    def update(sent: int, _total: int) -> None:
        bar.update(sent - bar.n)
        if sent >= total:
            bar.close()

    return update


# ---- output ---------------------------------------------------------------
def _to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def _print_json(message: Message) -> None:
    print(json.dumps(_to_dict(message), indent=1))


def _when(dataset: Any) -> str:
    return dataset.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def _print_dataset(d: Any) -> None:
    print(f"dataset {d.id}  {d.display_name}")
    print(f"  {d.row_count} rows x {d.column_count} columns, {d.size_bytes / 1e6:.1f} MB, {d.fingerprint[:23]}…")
    rows = []
    for c in d.schema.columns:
        kind = labels.label(common_pb2.ColumnKind, c.kind)
        detail = ""
        if c.HasField("minimum"):
            detail = f"{c.minimum:g} .. {c.maximum:g}"
        elif c.categories:
            detail = ", ".join(c.categories[:4]) + (", …" if len(c.categories) > 4 else "")
        if c.withheld_categories:
            detail = (detail + "; " if detail else "") + f"{c.withheld_categories} rare withheld"
        if c.datetime_format:
            detail = f"format {c.datetime_format}"
        if c.policy and c.policy != "learn":
            detail = c.policy + (f": {c.fake_format}" if c.fake_format else "")
        rows.append(
            [
                c.name,
                kind + (" (set)" if c.kind_overridden else ""),
                str(c.missing_count),
                str(c.distinct_count),
                detail,
            ]
        )
    _print_table(["COLUMN", "KIND", "MISSING", "DISTINCT", "VALUES"], rows, indent="  ")


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> None:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(str(v))) for w, v in zip(widths, row, strict=True)]
    widths = [min(w, 40) for w in widths]
    fmt = indent + "  ".join(f"{{:<{w}.{w}}}" for w in widths)
    print(fmt.format(*header))
    for row in rows:
        print(fmt.format(*[str(v) for v in row]))
