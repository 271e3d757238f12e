"""Privacy by construction at training time: what each column becomes, and rare values.

A job's config carries, besides the engine's settings:

- ``column_policies`` (column -> ``learn`` | ``fake`` | ``id`` | ``drop``): set per column;
  the others default by kind: identifier and free-text columns ``fake`` (values in the
  source's format, see ``services.common.fakes``), everything else ``learn``.
  ``exclude_columns`` are ``drop``, ``discrete_columns`` ``learn`` (as categories).
  ``fake`` and ``id`` apply to identifier, free-text, categorical and whole-number columns.
- ``rare_value_min_count`` (k, default ``RARE_MIN_COUNT`` = 5) and ``allow_rare_values``
  (default false): a value that fewer than k training rows hold is never emitted as it is.

How rare values are kept out (``protect``):

- *categories* (categorical columns, and columns learned as categories): before training,
  every training cell holding a rare category is given a frequent one instead, drawn at the
  frequent categories' own frequencies (seeded); for categories that are numbers (integer
  codes such as Titanic ``Parch``) the nearest frequent number. The model never sees a rare
  category, so it cannot emit one. This was chosen over merging rare categories into an
  "other" bucket: the two move exactly the same probability mass (the total-variation
  distance of the column to the real one is the rare share either way), but resampling
  invents no value (a synthetic table keeps the source's domain, which an application
  reading it may validate) and keeps the order of numeric codes (6 children becomes 5, not
  "other"). A column none of whose values reaches k cannot be learned without copying; a
  categorical one is faked instead (said in its ``kind_reason``), a numeric column asked to
  be learned as categories is refused.
- *numbers* (continuous and datetime columns): bottom- and top-coded at the k-th smallest
  and largest training values (the schema's ``minimum``/``maximum``), and synthetic values
  that land on a rare real value (fewer than k training rows, or fewer than k rows of the
  whole table: a held-out person's unique value is not emitted by chance either) move to the
  nearest grid point that is not one (``services.common.fakes.Avoid``, applied by the sampler).
- *identifier and free text*: near-unique text is never learned as categories (schema
  inference makes it an identifier); by default it is faked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from services.common.errors import FieldViolation, InvalidArgument
from services.common.fakes import DEFAULT_LOCALE, learn_avoid, learn_fake, locale_ok
from services.common.schema import POLICIES, RARE_MIN_COUNT, ColumnInfo, ColumnKind

__all__ = ["PROTECTION_FIELDS", "check_policies", "protect", "protection_config"]

PROTECTION_FIELDS = frozenset({"column_policies", "rare_value_min_count", "allow_rare_values", "fake_locale"})
_TEXTUAL = frozenset({ColumnKind.IDENTIFIER, ColumnKind.FREE_TEXT, ColumnKind.CATEGORICAL})
_MAX_K = 1000


def protection_config(overrides: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """The protection part of a job's effective config: defaults filled in, each bad field an
    ``InvalidArgument`` field violation."""
    problems: list[FieldViolation] = []
    policies = {str(k): str(v).strip().lower() for k, v in dict(overrides.get("column_policies") or {}).items()}
    for name, policy in policies.items():
        if name not in columns:
            problems.append(FieldViolation(f'config.column_policies["{name}"]', f"unknown column {name!r}"))
        elif policy not in POLICIES:
            problems.append(
                FieldViolation(f'config.column_policies["{name}"]', f"{policy!r} is not one of {', '.join(POLICIES)}")
            )
    raw_k = overrides.get("rare_value_min_count")
    k = RARE_MIN_COUNT if raw_k in (None, 0) else raw_k
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= _MAX_K:
        problems.append(FieldViolation("config.rare_value_min_count", f"must be a whole number from 1 to {_MAX_K}"))
        k = RARE_MIN_COUNT
    locale = str(overrides.get("fake_locale") or DEFAULT_LOCALE)
    if not locale_ok(locale):
        problems.append(FieldViolation("config.fake_locale", f"{locale!r} is not a Faker locale (e.g. en_US, de_DE)"))
    exclude = set(overrides.get("exclude_columns") or [])
    discrete = set(overrides.get("discrete_columns") or [])
    for name, policy in policies.items():
        if name in exclude and policy != "drop":
            problems.append(
                FieldViolation(f'config.column_policies["{name}"]', f"{name!r} is in exclude_columns (dropped)")
            )
        if name in discrete and policy != "learn":
            problems.append(
                FieldViolation(f'config.column_policies["{name}"]', f"{name!r} is in discrete_columns (learned)")
            )
    if problems:
        raise InvalidArgument(
            "bad privacy settings: " + "; ".join(p.description for p in problems),
            reason="INVALID_PRIVACY_SETTINGS",
            violations=problems,
        )
    return {
        "column_policies": policies,
        "rare_value_min_count": int(k),
        "allow_rare_values": bool(overrides.get("allow_rare_values", False)),
        "fake_locale": locale,
    }


def check_policies(config: Mapping[str, Any], columns: Sequence[ColumnInfo]) -> None:
    """Refuse, before a job is queued, a policy its column's kind cannot take; and a target
    that would not be learned."""
    problems = []
    target = config.get("target_column") or ""
    for col in columns:
        policy = (config.get("column_policies") or {}).get(col.name)
        if policy in ("fake", "id") and not (
            col.kind in _TEXTUAL or (col.kind is ColumnKind.CONTINUOUS and col.integer)
        ):
            problems.append(
                FieldViolation(
                    f'config.column_policies["{col.name}"]',
                    f"{col.name!r} is a {col.kind.value} column; {policy} applies to identifier, free-text, "
                    "categorical and whole-number columns",
                )
            )
        if col.name == target and policy in ("fake", "id", "drop"):
            problems.append(
                FieldViolation(f'config.column_policies["{col.name}"]', f"{col.name!r} is the target, which is learned")
            )
    if problems:
        raise InvalidArgument(
            "bad column policies: " + "; ".join(p.description for p in problems),
            reason="INVALID_PRIVACY_SETTINGS",
            violations=problems,
        )


def _policy(col: ColumnInfo, config: Mapping[str, Any]) -> str:
    if col.name in (config.get("exclude_columns") or []):
        return "drop"
    chosen = (config.get("column_policies") or {}).get(col.name)
    if chosen:
        return str(chosen)
    if col.name in (config.get("discrete_columns") or []):
        return "learn"
    return "fake" if col.kind in (ColumnKind.IDENTIFIER, ColumnKind.FREE_TEXT) else "learn"


def _texts(series: pd.Series) -> list[str]:
    present = series[series.notna()]
    out = []
    for v in present.tolist():
        if isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return out


def protect(
    frame: pd.DataFrame, train_idx: np.ndarray, columns: Sequence[ColumnInfo], config: Mapping[str, Any]
) -> tuple[pd.DataFrame, list[ColumnInfo]]:
    """(the training rows with rare categories replaced, the model's schema with each column's
    policy applied). ``frame`` is the whole dataset, ``train_idx`` its training rows, ``columns``
    the schema after ``columns_for_training``, ``config`` the job's effective config."""
    k = int(config.get("rare_value_min_count") or RARE_MIN_COUNT)
    allow = bool(config.get("allow_rare_values", False))
    locale = str(config.get("fake_locale") or DEFAULT_LOCALE)
    discrete = set(config.get("discrete_columns") or [])
    rng = np.random.default_rng(np.random.SeedSequence([int(config.get("seed") or 0), 0x9A7E]))
    train = frame.iloc[train_idx].reset_index(drop=True).copy()
    out: list[ColumnInfo] = []
    for col in columns:
        policy = _policy(col, config)
        if policy == "drop":
            reason = col.kind_reason if col.overridden else "dropped on request: left empty"
            out.append(dataclasses.replace(col, kind=ColumnKind.FREE_TEXT, policy="drop", kind_reason=reason))
            continue
        if policy == "id":
            why = "numbered on request (1, 2, 3, ... or syn-000000001, ...): no real value"
            out.append(
                dataclasses.replace(
                    col, kind=ColumnKind.IDENTIFIER, policy="id", overridden=True, kind_reason=why, categories=[]
                )
            )
            continue
        if policy == "fake":
            out.append(_faked(col, frame, train, k, locale, why=""))
            continue
        if col.kind in (ColumnKind.IDENTIFIER, ColumnKind.FREE_TEXT):
            col = dataclasses.replace(
                col, kind=ColumnKind.CATEGORICAL, overridden=True, kind_reason="learned as categories on request"
            )
        as_categories = col.kind is ColumnKind.CATEGORICAL or col.name in discrete
        if as_categories:
            learned = _rare_categories(col, train, k, allow, rng)
            if learned is None:
                why = (
                    f"every value is seen in fewer than {k} training rows, so learning it could only copy rare "
                    "values: made up in the source's format instead"
                )
                out.append(_faked(col, frame, train, k, locale, why=why))
                continue
            out.append(dataclasses.replace(learned, policy="learn"))
            continue
        col = dataclasses.replace(col, policy="learn")
        if not allow:
            values = _numbers(train[col.name], col.kind)
            rest = np.setdiff1d(np.arange(len(frame)), train_idx)
            others = _numbers(frame[col.name].iloc[rest], col.kind)
            spec = learn_avoid(values, k, datetime=col.kind is ColumnKind.DATETIME, others=others)
            if spec is not None:
                col = dataclasses.replace(col, avoid=spec, minimum=spec["low"], maximum=spec["high"])
        out.append(col)
    return train, out


def _numbers(series: pd.Series, kind: ColumnKind) -> np.ndarray:
    if kind is ColumnKind.DATETIME:
        stamps = pd.to_datetime(series, errors="coerce")
        seconds = (stamps - pd.Timestamp("1970-01-01", tz=stamps.dt.tz)) / pd.Timedelta(seconds=1)
        return seconds.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _faked(col: ColumnInfo, frame: pd.DataFrame, train: pd.DataFrame, k: int, locale: str, why: str) -> ColumnInfo:
    free_text = col.kind is ColumnKind.FREE_TEXT
    integer = bool(col.integer) and col.kind in (ColumnKind.IDENTIFIER, ColumnKind.CONTINUOUS)
    spec = learn_fake(
        col.name,
        _texts(train[col.name]),
        _texts(frame[col.name]),
        rows=len(train),
        missing=int(train[col.name].isna().sum()),
        k=k,
        free_text=free_text,
        integer=integer,
        unique=col.kind is ColumnKind.IDENTIFIER,
        locale=locale,
    )
    kind = ColumnKind.FREE_TEXT if free_text else ColumnKind.IDENTIFIER
    return dataclasses.replace(
        col,
        kind=kind,
        integer=integer,
        policy="fake",
        fake=spec,
        categories=[],
        overridden=col.overridden or bool(why),
        kind_reason=why or col.kind_reason,
    )


def _rare_categories(
    col: ColumnInfo, train: pd.DataFrame, k: int, allow: bool, rng: np.random.Generator
) -> ColumnInfo | None:
    """The column's schema for a model that learns it as categories, with the rare training
    cells of ``train`` replaced in place (unless ``allow``); None when no value is frequent."""
    series = train[col.name]
    present = series.notna().to_numpy()
    keys = pd.Series(_texts(series), dtype=object)
    counts = keys.value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    frequent = [v for v, c in ordered if c >= k]
    rare = {v for v, c in ordered if c < k}
    if not frequent and rare and not allow:
        if col.kind is not ColumnKind.CATEGORICAL:
            raise InvalidArgument(
                f"column {col.name!r}: every value is seen in fewer than {k} training rows, so learning it as "
                "categories could only copy rare values; learn it as numbers (leave it out of discrete_columns), "
                "lower rare_value_min_count or set allow_rare_values",
                reason="ALL_VALUES_RARE",
                violations=[FieldViolation("config.discrete_columns", f"{col.name!r}: every value is rare")],
            )
        return None
    if rare and not allow:
        texts = keys.to_numpy(dtype=object)
        hit = np.flatnonzero(np.isin(texts, list(rare)))
        positions = np.flatnonzero(present)[hit]
        original = series.to_numpy(dtype=object)
        numeric = _numeric_codes(frequent)
        if numeric is not None:
            wanted = pd.to_numeric(pd.Series(texts[hit]), errors="coerce").to_numpy(dtype=np.float64)
            order = np.argsort(numeric, kind="stable")
            sorted_codes = numeric[order]
            pos = np.clip(np.searchsorted(sorted_codes, wanted), 1, len(sorted_codes)) - 1
            upper = np.minimum(pos + 1, len(sorted_codes) - 1)
            pick = np.where(np.abs(sorted_codes[upper] - wanted) < np.abs(sorted_codes[pos] - wanted), upper, pos)
            replacement = [frequent[order[i]] for i in pick]
        else:
            weights = np.array([counts[v] for v in frequent], dtype=np.float64)
            replacement = [frequent[i] for i in rng.choice(len(frequent), size=len(hit), p=weights / weights.sum())]
        sample = next((v for v in original[present] if v is not None), None)
        if sample is not None and not isinstance(sample, str):  # a numeric column learned as categories
            replacement_values: list[Any] = [float(r) for r in replacement]
        else:
            replacement_values = list(replacement)
        updated = original.copy()
        updated[positions] = replacement_values
        train[col.name] = pd.Series(updated, index=series.index).astype(series.dtype, errors="ignore")
    return dataclasses.replace(col, categories=frequent[:1000], withheld_categories=len(rare))


def _numeric_codes(values: list[str]) -> np.ndarray | None:
    parsed = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    return None if len(parsed) == 0 or np.isnan(parsed).any() else parsed
