"""The schema of a stored dataset: column kinds and per-column summaries.

Plain types, no pandas: servicers, the sampler, the evaluator and the engines
read schemas through these. How a schema is inferred from an upload lives in
``services.trainer.datasets``; how a dataset is stored and read back, in
``services.common.dataset_store``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DATETIME_FORMATS", "POLICIES", "RARE_MIN_COUNT", "ColumnInfo", "ColumnKind", "DatasetInfo"]

# A value seen in fewer than this many rows is rare: never listed in a schema
# shown over the API, masked in previews, and (unless a training job opts in)
# never emitted as it is in synthetic rows. Five is the smallest cell size
# statistical offices commonly publish (a count of 1 to 4 singles people out;
# threshold rules of 3 to 5, 5 being the usual default for microdata); it is
# small enough that ordinary categories keep their values (Adult: 1 of 102
# category values is rarer).
RARE_MIN_COUNT = 5

# What a training job does with a column (``ColumnInfo.policy`` in a model's schema):
# learn it, replace it with fakes in the source's format, number the rows
# ("id": 1, 2, ... or syn-000000001, ...), or drop it (left empty).
POLICIES = ("learn", "fake", "id", "drop")

# The formats a datetime column's ``datetime_format`` is one of. Inference
# tries them in this order; the first format that parses every value wins.
DATETIME_FORMATS: tuple[str, ...] = (
    "%Y-%m-%dT%H:%M:%S.%fZ",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%MZ",
    "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y%m%dT%H%M%SZ",
    "%Y%m%dT%H%M%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%d %b %Y",
    "%b %d, %Y",
    # Only reachable through a datetime override: such columns are numeric first.
    "%Y%m%d",
    "%Y",
)


class ColumnKind(enum.StrEnum):
    CONTINUOUS = "continuous"
    CATEGORICAL = "categorical"
    DATETIME = "datetime"
    IDENTIFIER = "identifier"
    FREE_TEXT = "free_text"


@dataclass
class ColumnInfo:
    name: str
    kind: ColumnKind
    missing_count: int
    distinct_count: int
    # Numeric values that are all whole numbers (so sampling can keep ints).
    integer: bool = False
    # strftime format of a datetime column, e.g. "%Y%m%dT%H%M%S".
    datetime_format: str | None = None
    # The kind came from a user override.
    overridden: bool = False
    # Numeric columns (any kind); datetime columns: epoch seconds.
    minimum: float | None = None
    maximum: float | None = None
    # Categorical columns: distinct values seen in at least RARE_MIN_COUNT rows
    # (a model's schema: in at least its job's count of training rows), most
    # frequent first, at most 1000.
    categories: list[str] = field(default_factory=list)
    # One plain sentence on why the column got its kind ("" in schemas stored
    # before it was recorded).
    kind_reason: str = ""
    # Categorical columns: distinct values left out of ``categories`` because
    # they are rare (only counted, never listed).
    withheld_categories: int = 0
    # A model's schema: one of POLICIES ("" in datasets and older models,
    # whose identifiers are numbered and free text left empty).
    policy: str = ""
    # A model's schema, policy "fake": how fakes are made
    # (services.common.fakes); never a real value.
    fake: dict[str, Any] | None = None
    # A model's schema, learned numeric columns: the rare real values that
    # synthetic values are moved off (salted hashes; services.common.fakes.Avoid).
    avoid: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "missing_count": self.missing_count,
            "distinct_count": self.distinct_count,
            "integer": self.integer,
            "datetime_format": self.datetime_format,
            "overridden": self.overridden,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "categories": list(self.categories),
            "kind_reason": self.kind_reason,
            "withheld_categories": self.withheld_categories,
            "policy": self.policy,
            "fake": self.fake,
            "avoid": self.avoid,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnInfo:
        return cls(
            name=str(data["name"]),
            kind=ColumnKind(data["kind"]),
            missing_count=int(data["missing_count"]),
            distinct_count=int(data["distinct_count"]),
            integer=bool(data.get("integer", False)),
            datetime_format=data.get("datetime_format"),
            overridden=bool(data.get("overridden", False)),
            minimum=None if data.get("minimum") is None else float(data["minimum"]),
            maximum=None if data.get("maximum") is None else float(data["maximum"]),
            categories=[str(c) for c in data.get("categories", [])],
            kind_reason=str(data.get("kind_reason") or ""),
            withheld_categories=int(data.get("withheld_categories") or 0),
            policy=str(data.get("policy") or ""),
            fake=dict(data["fake"]) if data.get("fake") else None,
            avoid=dict(data["avoid"]) if data.get("avoid") else None,
        )


@dataclass
class DatasetInfo:
    id: str
    display_name: str
    row_count: int
    column_count: int
    # Bytes of the stored normalised UTF-8 CSV.
    size_bytes: int
    # "sha256:<hex>" of the stored normalised UTF-8 CSV bytes.
    fingerprint: str
    columns: list[ColumnInfo]
    missing_markers: list[str]
    # Python codec name of the declared encoding, e.g. "utf-8", "iso8859-1".
    source_encoding: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "display_name": self.display_name,
            "row_count": self.row_count,
            "column_count": self.column_count,
            "size_bytes": self.size_bytes,
            "fingerprint": self.fingerprint,
            "columns": [c.to_dict() for c in self.columns],
            "missing_markers": list(self.missing_markers),
            "source_encoding": self.source_encoding,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetInfo:
        return cls(
            id=str(data["id"]),
            display_name=str(data["display_name"]),
            row_count=int(data["row_count"]),
            column_count=int(data["column_count"]),
            size_bytes=int(data["size_bytes"]),
            fingerprint=str(data["fingerprint"]),
            columns=[ColumnInfo.from_dict(c) for c in data["columns"]],
            missing_markers=[str(m) for m in data["missing_markers"]],
            source_encoding=str(data["source_encoding"]),
            created_at=float(data["created_at"]),
        )

    def column(self, name: str) -> ColumnInfo:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)
