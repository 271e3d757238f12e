"""Column policies and rare-value protection at training time (services.trainer.protection)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.common.errors import InvalidArgument
from services.common.schema import ColumnInfo, ColumnKind
from services.trainer.protection import check_policies, protect, protection_config

N = 200
NAMES = ["id", "name", "city", "children", "fare"]


def _frame() -> tuple[pd.DataFrame, list[ColumnInfo]]:
    rng = np.random.default_rng(0)
    cities = rng.choice(["Paris", "Lyon", "Nice"], size=N).astype(object)
    cities[:3] = ["Gap", "Albi", "Albi"]  # rare: 1 and 2 rows
    children = rng.choice([0, 1, 2], size=N).astype(object).astype(str)
    children[3] = "6"  # rare code: the nearest frequent one is 2
    frame = pd.DataFrame(
        {
            "id": [f"T{100000 + 7 * i}" for i in range(N)],
            "name": [f"Passenger{i}, Mr. Someone" for i in range(N)],
            "city": cities,
            "children": children,
            "fare": np.round(rng.gamma(2.0, 10.0, size=N), 2),
        }
    )
    frame.loc[10, "fare"] = 512.33  # the one most expensive ticket
    columns = [
        ColumnInfo("id", ColumnKind.IDENTIFIER, 0, N),
        ColumnInfo("name", ColumnKind.FREE_TEXT, 0, N),
        ColumnInfo("city", ColumnKind.CATEGORICAL, 0, 5),
        ColumnInfo("children", ColumnKind.CATEGORICAL, 0, 4, integer=True, minimum=0.0, maximum=6.0),
        ColumnInfo("fare", ColumnKind.CONTINUOUS, 0, N, minimum=0.0, maximum=512.33),
    ]
    return frame, columns


def _config(**overrides: object) -> dict:
    cfg = {"seed": 1, "discrete_columns": [], "exclude_columns": [], **overrides}
    cfg.update(protection_config(cfg, NAMES))
    return cfg


def test_defaults_fake_identifiers_and_text_and_resample_rare_categories() -> None:
    frame, columns = _frame()
    train, out = protect(frame, np.arange(N), columns, _config())
    by = {c.name: c for c in out}
    assert (by["id"].policy, by["id"].kind) == ("fake", ColumnKind.IDENTIFIER)
    assert (by["name"].policy, by["name"].kind) == ("fake", ColumnKind.FREE_TEXT)
    assert by["name"].fake is not None and by["name"].fake["kind"] == "name"
    # rare categories never reach the model: resampled from the frequent ones
    assert set(train["city"]) == {"Paris", "Lyon", "Nice"}
    assert sorted(by["city"].categories) == ["Lyon", "Nice", "Paris"] and by["city"].withheld_categories == 2
    assert train["children"][3] == "2"  # a numeric code goes to the nearest frequent one
    assert by["children"].withheld_categories == 1
    # numbers: top-coded, rare values listed (hashed) for the sampler
    assert by["fare"].maximum < 512.33 and by["fare"].avoid is not None
    assert (train["fare"] == frame["fare"]).all()  # numbers are not changed before training


def test_policies_id_drop_learn_and_opt_out() -> None:
    frame, columns = _frame()
    cfg = _config(column_policies={"id": "id", "name": "drop", "city": "fake"}, allow_rare_values=True)
    train, out = protect(frame, np.arange(N), columns, cfg)
    by = {c.name: c for c in out}
    assert (by["id"].policy, by["name"].policy, by["city"].policy) == ("id", "drop", "fake")
    assert by["city"].kind is ColumnKind.IDENTIFIER  # faked: not learned, not evaluated
    assert train["children"][3] == "6"  # opted out: rare values are learned as they are
    assert by["children"].withheld_categories == 1  # ... but still never listed
    assert by["fare"].avoid is None and by["fare"].maximum == 512.33
    # learning unique ids copies them: only with the opt-out; under protection they are faked instead
    learned = protect(frame, np.arange(N), columns, _config(column_policies={"id": "learn"}, allow_rare_values=True))
    assert (learned[1][0].kind, learned[1][0].policy) == (ColumnKind.CATEGORICAL, "learn")
    assert learned[1][0].categories == [] and learned[1][0].withheld_categories == N
    protected = protect(frame, np.arange(N), columns, _config(column_policies={"id": "learn"}))[1][0]
    assert (protected.kind, protected.policy) == (ColumnKind.IDENTIFIER, "fake")


def test_a_column_with_no_frequent_value_is_faked() -> None:
    frame, columns = _frame()
    frame["city"] = [f"town{i % 50}" for i in range(N)]  # 4 rows each: every value rare at k=5
    _, out = protect(frame, np.arange(N), columns, _config())
    city = out[2]
    assert (city.policy, city.kind) == ("fake", ColumnKind.IDENTIFIER)
    assert city.kind_reason.startswith("every value is seen in fewer than 5 training rows")


def test_bad_settings_are_refused_with_field_violations() -> None:
    with pytest.raises(InvalidArgument) as err:
        protection_config(
            {
                "column_policies": {"nope": "fake", "city": "scramble", "id": "learn"},
                "rare_value_min_count": -1,
                "fake_locale": "xx_YY",
                "exclude_columns": ["id"],
            },
            NAMES,
        )
    fields = [v.field for v in err.value.violations]
    assert 'config.column_policies["nope"]' in fields and 'config.column_policies["city"]' in fields
    assert "config.rare_value_min_count" in fields and "config.fake_locale" in fields
    assert fields.count('config.column_policies["id"]') == 1  # excluded, yet asked to be learned
    _, columns = _frame()
    with pytest.raises(InvalidArgument, match="fare"):
        check_policies({"column_policies": {"fare": "fake"}}, columns)
    with pytest.raises(InvalidArgument, match="target"):
        check_policies({"column_policies": {"city": "drop"}, "target_column": "city"}, columns)
