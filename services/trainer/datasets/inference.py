"""Infer each column's kind and summary from its counted values.

Schema inference (per column, on the non-missing values; rules in this order,
the first that fits wins; ``distinct`` counts distinct cell texts, ``unique
ratio`` = distinct / non-missing). Every column records in ``kind_reason`` one
plain sentence saying which rule gave its kind (``"user override"`` for
overrides), so a surprising kind can be explained and corrected:

1. *numeric* if every value parses as a finite number (``pandas.to_numeric``;
   ``inf`` and ``nan`` text do not count as numbers). ``integer`` is set when all
   are whole numbers within +-2**53. Numbers with fractions -> ``continuous``.
   Whole numbers:

   - id-like name (``id``, ``uuid``, ``guid``, ``key``, ``pk`` as the last word:
     ``id``, ``user_id``, ``CustomerID``, ``order-key``) and unique ratio >= 0.95
     -> ``identifier``;
   - at most 10 distinct values -> ``categorical`` (flags, small codes);
   - at most 20 distinct values and unique ratio <= 0.5 -> ``categorical``.
     Integer codes such as UCI online-shoppers ``Browser`` (13 codes),
     ``TrafficType`` (20) or King County ``grade`` (12) are categories; a
     column with 20 values or fewer has too few levels for a continuous model to
     gain anything, and small counts (``bedrooms``, Pima ``Pregnancies``: 17)
     lose nothing as categories. The unique-ratio bound asks that values
     repeat: 13 distinct values in 23 rows (nycflights ``planes.speed``) are
     measurements, not codes. Real measurements start well above 20 distinct
     values (Adult ``age`` 73, ``hours_per_week`` 94, Pima ``BloodPressure`` 47);
   - a name whose last word says it is a code (``code``, ``zip``, ``zipcode``,
     ``postcode``, ``postal``, ``type``, ``category``, ``class``, ``region``,
     ``status``; words split as for ids, so ``TrafficType`` ends in ``type``),
     at most 200 distinct values and unique ratio <= 0.5 -> ``categorical``
     (King County ``zipcode``: 70 values, 98001..98199, whose order means
     nothing). When most values (>= 50%) are 0 the column is an amount with a
     misleading name, not codes, and stays ``continuous``, unless the last word
     is one of the unambiguous ``code``, ``zip``, ``zipcode``, ``postcode``,
     ``postal``. Zero-inflated amounts without such a name (Adult
     ``capital_gain``: 119 values, 92% zeros; King County ``yr_renovated``: 70
     values, 96% zeros) never reach this rule's categories;
   - otherwise -> ``continuous`` (``minimum``/``maximum`` recorded; so are Adult
     ``age``, King County ``yr_built`` with 116 values, Pima ``Glucose``).
2. *datetime* if every value parses with one format of ``DATETIME_FORMATS``
   (tried in order, so month-first ``%m/%d/%Y`` wins over day-first when both
   fit); the format is recorded and ``minimum``/``maximum`` are epoch seconds
   (times without an offset are taken as UTC; ``Z`` and ``%z`` offsets are
   converted to UTC).
3. other text:

   - id-like name and unique ratio >= 0.5 -> ``identifier``;
   - at least 50 values, unique ratio >= 0.95 and every value a single token
     (no whitespace, at most 64 characters) -> ``identifier``;
   - unique ratio >= 0.5 and (mean length > 30 or at least half the values hold
     several words) -> ``free_text``;
   - at least 20 values and unique ratio >= 0.5 -> ``identifier`` (near-unique
     text). Kaggle Titanic ``Ticket`` (681 distinct in 891 rows: ``A/5 21171``,
     ``PC 17599``, ``113803``) or ``Cabin`` (147 in 204) are not categories a
     model can learn: most values occur once, so a categorical model could only
     memorise them and re-emit real rare values, a privacy leak. Identifiers
     are not learned and the sampler makes fresh values. Ordinary categories
     repeat far more (Adult ``native_country``: 41 values in 32k rows, ratio
     0.001; nyc taxi zones: 203 in 6k). Small tables are judged by the same
     ratio: 20 distinct values in 30 rows become an identifier, because with
     most values seen once the model could only copy them; a user who knows
     the values are harmless categories overrides the kind. Below 20 values
     nothing is concluded (the column stays categorical);
   - otherwise -> ``categorical``.

``categories`` (categorical columns only) lists the distinct values seen in at
least ``RARE_MIN_COUNT`` (5) rows, most frequent first (ties by text), at most
1000; rarer values are only counted (``withheld_categories``), never listed,
because a value that few people have singles them out (Seattle pet names,
Titanic's one ``Parch`` of 6). ``kind_overrides`` replace the
inferred kind; an override to ``continuous`` or ``datetime`` must fit every
value, else the upload is refused naming the first row that does not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from services.common.dataset_store import parse_datetimes
from services.common.errors import FieldViolation, InvalidArgument
from services.common.schema import DATETIME_FORMATS, RARE_MIN_COUNT, ColumnInfo, ColumnKind
from services.trainer.datasets.scan import (
    PANDAS_CHUNK_ROWS,
    Profile,
    Scan,
    col_path,
    profile_columns,
    quote_list,
    row_path,
)

__all__ = ["infer_schema"]

_MAX_CATEGORIES = 1000
# Integer codes (see the module docstring for the reasoning behind each number).
_SMALL_INT_CATEGORIES = 10
_INT_CODE_MAX_DISTINCT = 20
_NAMED_CODE_MAX_DISTINCT = 200
_CODE_MAX_UNIQUE = 0.5
_ZERO_INFLATED = 0.5
_CODE_WORDS = frozenset(
    {"code", "zip", "zipcode", "postcode", "postal", "type", "category", "class", "region", "status"}
)
_STRONG_CODE_WORDS = frozenset({"code", "zip", "zipcode", "postcode", "postal"})
_ID_UNIQUE_NUMERIC = 0.95
_ID_UNIQUE_NAMED_TEXT = 0.5
_ID_UNIQUE_TOKENS = 0.95
_ID_MIN_VALUES = 50
_ID_MAX_TOKEN_LEN = 64
_FREE_TEXT_UNIQUE = 0.5
_FREE_TEXT_MEAN_LEN = 30
_FREE_TEXT_MULTIWORD = 0.5
_NEAR_UNIQUE_TEXT = 0.5
_NEAR_UNIQUE_MIN_VALUES = 20
_NOT_LEARNED = "treated as an identifier and not learned, so no real value is copied"
_MAX_EXACT_INT = 2**53
_ID_WORDS = frozenset({"id", "uuid", "guid", "key", "pk"})


def infer_schema(table: Path, scan: Scan, markers: list[str], overrides: Mapping[str, ColumnKind]) -> list[ColumnInfo]:
    """The columns of the normalised ``table``: each one's kind inferred, or
    taken from ``overrides`` (which must then fit every value)."""
    profiles = profile_columns(table, scan, markers)
    empty = [name for name, p in zip(scan.header, profiles, strict=True) if p.present == 0]
    if empty:
        raise InvalidArgument(
            f"column{'s' if len(empty) > 1 else ''} {quote_list(empty)} "
            f"{'are' if len(empty) > 1 else 'is'} empty or missing in every row; remove "
            f"{'them' if len(empty) > 1 else 'it'} or fill in values",
            reason="EMPTY_COLUMN",
            violations=[FieldViolation(col_path(n), "empty or missing in every row") for n in empty],
        )
    columns: list[ColumnInfo] = []
    for index, (name, prof) in enumerate(zip(scan.header, profiles, strict=True)):
        if name in overrides:
            columns.append(_apply_override(name, index, overrides[name], prof, table, scan))
        else:
            columns.append(_infer_column(name, prof))
    return columns


@dataclass
class _Numbers:
    ok: np.ndarray  # bool per distinct value: parses as a finite number
    numbers: np.ndarray  # float64 per distinct value (NaN where not ok)

    @property
    def all_ok(self) -> bool:
        return bool(self.ok.all())

    def integer(self) -> bool:
        nums = self.numbers
        return bool(np.all(nums == np.floor(nums)) and np.all(np.abs(nums) <= _MAX_EXACT_INT))


def _numbers(values: np.ndarray) -> _Numbers:
    parsed = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    return _Numbers(ok=np.isfinite(parsed), numbers=parsed)


def _last_word(name: str) -> str:
    """The last word of a column name, lower case: camelCase, snake_case,
    kebab-case and spaces all split (``TrafficType`` -> ``type``)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name.strip())
    words = [w for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]
    return words[-1].lower() if words else ""


def _is_id_name(name: str) -> bool:
    return _last_word(name) in _ID_WORDS


def _infer_column(name: str, prof: Profile) -> ColumnInfo:
    present = prof.present
    distinct = len(prof.values)
    unique_ratio = distinct / present
    nums = _numbers(prof.values)
    seen = f"{distinct} distinct in {present} {'rows' if prof.missing == 0 else 'non-missing rows'}"
    if nums.all_ok:
        if not nums.integer():
            return _column(name, ColumnKind.CONTINUOUS, prof, nums, reason=f"numbers with {_values(distinct)}")
        if _is_id_name(name) and unique_ratio >= _ID_UNIQUE_NUMERIC:
            why = f"whole numbers named like an identifier ({seen}): {_NOT_LEARNED}"
            return _column(name, ColumnKind.IDENTIFIER, prof, nums, reason=why)
        word = _last_word(name)
        if distinct <= _SMALL_INT_CATEGORIES or (
            distinct <= _INT_CODE_MAX_DISTINCT and unique_ratio <= _CODE_MAX_UNIQUE
        ):
            return _column(name, ColumnKind.CATEGORICAL, prof, nums, reason=f"integer codes: {_values(distinct)}")
        if word in _CODE_WORDS and distinct <= _NAMED_CODE_MAX_DISTINCT and unique_ratio <= _CODE_MAX_UNIQUE:
            zeros = float(prof.counts[nums.numbers == 0].sum()) / present
            if zeros < _ZERO_INFLATED or word in _STRONG_CODE_WORDS:
                why = f"integer codes named like a code ({word!r}): {_values(distinct)}"
                return _column(name, ColumnKind.CATEGORICAL, prof, nums, reason=why)
            why = f"whole numbers with {_values(distinct)}, mostly 0 (an amount, not codes, despite the name)"
            return _column(name, ColumnKind.CONTINUOUS, prof, nums, reason=why)
        return _column(name, ColumnKind.CONTINUOUS, prof, nums, reason=f"whole numbers with {_values(distinct)}")
    fmt = _detect_datetime(prof.values)
    if fmt is not None:
        why = f"dates/times in the format {fmt}"
        return _column(name, ColumnKind.DATETIME, prof, nums, datetime_format=fmt, reason=why)
    if _is_id_name(name) and unique_ratio >= _ID_UNIQUE_NAMED_TEXT:
        why = f"text named like an identifier ({seen}): {_NOT_LEARNED}"
        return _column(name, ColumnKind.IDENTIFIER, prof, nums, reason=why)
    text = pd.Series(prof.values, dtype=object).astype(str)
    lengths = text.str.len().to_numpy()
    near_unique = f"near-unique text ({seen}): {_NOT_LEARNED}"
    if (
        present >= _ID_MIN_VALUES
        and unique_ratio >= _ID_UNIQUE_TOKENS
        and int(lengths.max()) <= _ID_MAX_TOKEN_LEN
        and not bool(text.str.contains(r"\s", regex=True).any())
    ):
        return _column(name, ColumnKind.IDENTIFIER, prof, nums, reason=near_unique)
    if unique_ratio >= _FREE_TEXT_UNIQUE:
        mean_length = float((lengths * prof.counts).sum()) / present
        multiword = text.str.strip().str.contains(r"\s", regex=True).to_numpy(dtype=bool)
        multiword_share = float(prof.counts[multiword].sum()) / present
        if mean_length > _FREE_TEXT_MEAN_LEN or multiword_share >= _FREE_TEXT_MULTIWORD:
            why = (
                f"free text ({_share(multiword_share)} of values have several words, "
                f"mean length {mean_length:.0f} characters): not learned"
            )
            return _column(name, ColumnKind.FREE_TEXT, prof, nums, reason=why)
    if present >= _NEAR_UNIQUE_MIN_VALUES and unique_ratio >= _NEAR_UNIQUE_TEXT:
        return _column(name, ColumnKind.IDENTIFIER, prof, nums, reason=near_unique)
    return _column(name, ColumnKind.CATEGORICAL, prof, nums, reason=f"text with {_values(distinct)}")


def _share(part: float) -> str:
    return f"{100 * part:.0f}%"


def _values(distinct: int) -> str:
    return f"{distinct} distinct value{'' if distinct == 1 else 's'}"


def _apply_override(name: str, index: int, kind: ColumnKind, prof: Profile, table: Path, scan: Scan) -> ColumnInfo:
    nums = _numbers(prof.values)
    if kind is ColumnKind.CONTINUOUS and not nums.all_ok:
        bad = set(prof.values[~nums.ok].tolist())
        raise _override_mismatch(name, index, kind, "is not a finite number", bad, table, scan)
    fmt: str | None = None
    if kind is ColumnKind.DATETIME:
        fmt, ok = _best_datetime_format(prof)
        if not ok.all():
            bad = set(prof.values[~ok].tolist())
            what = f"does not parse as a date/time (closest format {fmt!r})"
            raise _override_mismatch(name, index, kind, what, bad, table, scan)
    return _column(name, kind, prof, nums, datetime_format=fmt, overridden=True, reason="user override")


def _column(
    name: str,
    kind: ColumnKind,
    prof: Profile,
    nums: _Numbers,
    *,
    reason: str,
    datetime_format: str | None = None,
    overridden: bool = False,
) -> ColumnInfo:
    """A column's summary. Numeric stats are kept for any kind whose values are
    all numbers; datetimes get epoch-second bounds instead."""
    info = ColumnInfo(
        name=name,
        kind=kind,
        missing_count=prof.missing,
        distinct_count=len(prof.values),
        overridden=overridden,
        kind_reason=reason,
    )
    if kind is ColumnKind.DATETIME:
        assert datetime_format is not None
        parsed = parse_datetimes(pd.Series(prof.values, dtype=object), datetime_format, errors="coerce")
        seconds = parsed.dropna().astype("int64").to_numpy() / 1e9
        info.datetime_format = datetime_format
        info.minimum, info.maximum = float(seconds.min()), float(seconds.max())
    elif nums.all_ok:
        info.integer = nums.integer()
        info.minimum, info.maximum = float(nums.numbers.min()), float(nums.numbers.max())
    if kind is ColumnKind.CATEGORICAL:
        frequent = prof.counts >= RARE_MIN_COUNT
        info.categories = [str(v) for v in prof.values[frequent][:_MAX_CATEGORIES]]
        info.withheld_categories = int((~frequent).sum())
    return info


def _detect_datetime(values: np.ndarray) -> str | None:
    sample = pd.Series(values[:64], dtype=object)
    if not sample.str.contains(r"\d", regex=True).all() or int(sample.str.len().max()) > 40:
        return None
    full = pd.Series(values, dtype=object)
    for fmt in DATETIME_FORMATS:
        if parse_datetimes(sample, fmt, errors="coerce").isna().any():
            continue
        if not parse_datetimes(full, fmt, errors="coerce").isna().any():
            return fmt
    return None


def _best_datetime_format(prof: Profile) -> tuple[str, np.ndarray]:
    """The format that parses the most cells, and which distinct values it parses."""
    full = pd.Series(prof.values, dtype=object)
    best: tuple[int, str, np.ndarray] | None = None
    for fmt in DATETIME_FORMATS:
        ok = parse_datetimes(full, fmt, errors="coerce").notna().to_numpy()
        score = int(prof.counts[ok].sum())
        if best is None or score > best[0]:
            best = (score, fmt, ok)
        if ok.all():
            break
    assert best is not None
    return best[1], best[2]


def _override_mismatch(
    name: str, index: int, kind: ColumnKind, what: str, bad: set[str], table: Path, scan: Scan
) -> InvalidArgument:
    row, value = _first_row_with(table, index, len(scan.header), bad)
    line = scan.lines.line_of(row)
    return InvalidArgument(
        f"column {name!r} cannot be {kind.value}: row {row + 1} (line {line}) has {value!r}, which {what}",
        reason="OVERRIDE_MISMATCH",
        violations=[
            FieldViolation(col_path(name), f"cannot be {kind.value}"),
            FieldViolation(row_path(row, name), f"{value!r} {what}"),
        ],
    )


def _first_row_with(table: Path, index: int, ncols: int, bad: set[str]) -> tuple[int, str]:
    offset = 0
    with pd.read_csv(
        table,
        header=0,
        names=list(range(ncols)),
        usecols=[index],
        dtype=object,
        na_filter=False,
        encoding="utf-8",
        chunksize=PANDAS_CHUNK_ROWS,
    ) as reader:
        for chunk in reader:
            hits = np.flatnonzero(chunk[index].isin(bad).to_numpy())
            if len(hits):
                return offset + int(hits[0]), str(chunk[index].iloc[hits[0]])
            offset += len(chunk)
    return 0, next(iter(bad))  # unreachable: the values came from this table
