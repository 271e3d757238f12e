"""Dataset intake (services.common.tables): validation, inference, storage.

Real tables come from tests/fixtures/datasets (copies of the shared datasets),
the bundled data/adult.csv and tests/fixtures/ (always present); bad inputs are
small hand-made tables. Every refused upload must leave the
store's datasets/ and .staging/ folders empty.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from services.common.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SynthError,
)
from services.common.store import ArtifactStore
from services.common.tables import (
    DEFAULT_MISSING_MARKERS,
    ColumnInfo,
    ColumnKind,
    DatasetInfo,
    DatasetRepository,
    IntakeLimits,
)

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT / "tests" / "fixtures" / "datasets"  # copies of the shared datasets
ADULT = ROOT / "data" / "adult.csv"  # byte-identical to the shared datasets' adult.csv
KC_HOUSE_2000 = ROOT / "tests" / "fixtures" / "kc_house_2000.csv"  # header + first 2,000 rows of kc_house_data.csv
MB = 1 << 20

# rows x columns, from the datasets' README.md (tests/fixtures/datasets)
EXPECTED_SHAPES = {
    "adult.csv": (32_561, 15),
    "kc_house_data.csv": (21_613, 21),
    "pima_diabetes.csv": (768, 9),
    "nyc_taxis.csv": (6_433, 14),
    "nycflights13/airlines.csv": (16, 2),
    "nycflights13/airports.csv": (1_458, 8),
    "nycflights13/planes.csv": (3_322, 9),
    "nycflights13/flights.csv": (25_000, 19),
    "kddcup99_10pct.csv.gz": (494_021, 42),
}

# A few columns per file: (kind, missing_count or None, datetime_format or None)
EXPECTED_COLUMNS: dict[str, dict[str, tuple[ColumnKind, int | None, str | None]]] = {
    "kc_house_data.csv": {
        "id": (ColumnKind.IDENTIFIER, 0, None),
        "date": (ColumnKind.DATETIME, 0, "%Y%m%dT%H%M%S"),
        "price": (ColumnKind.CONTINUOUS, 0, None),
        "waterfront": (ColumnKind.CATEGORICAL, 0, None),
        "view": (ColumnKind.CATEGORICAL, 0, None),
        "grade": (ColumnKind.CATEGORICAL, 0, None),  # 12 integer codes
        "zipcode": (ColumnKind.CATEGORICAL, 0, None),  # 70 codes, named as such
        "yr_built": (ColumnKind.CONTINUOUS, 0, None),  # 116 years
        "yr_renovated": (ColumnKind.CONTINUOUS, 0, None),  # 70 values, 96% zeros
        "lat": (ColumnKind.CONTINUOUS, 0, None),
    },
    "pima_diabetes.csv": {
        "Outcome": (ColumnKind.CATEGORICAL, 0, None),
        "BMI": (ColumnKind.CONTINUOUS, 0, None),
        "Glucose": (ColumnKind.CONTINUOUS, 0, None),
        "BloodPressure": (ColumnKind.CONTINUOUS, 0, None),
    },
    "nyc_taxis.csv": {
        "pickup": (ColumnKind.DATETIME, 0, "%Y-%m-%d %H:%M:%S"),
        "dropoff": (ColumnKind.DATETIME, 0, "%Y-%m-%d %H:%M:%S"),
        "total": (ColumnKind.CONTINUOUS, 0, None),
        "payment": (ColumnKind.CATEGORICAL, 44, None),
        "pickup_zone": (ColumnKind.CATEGORICAL, 26, None),
        "dropoff_borough": (ColumnKind.CATEGORICAL, 45, None),
    },
    "nycflights13/flights.csv": {
        "time_hour": (ColumnKind.DATETIME, 0, "%Y-%m-%dT%H:%M:%SZ"),
        "dep_time": (ColumnKind.CONTINUOUS, 364, None),
        "arr_delay": (ColumnKind.CONTINUOUS, 446, None),
        "carrier": (ColumnKind.CATEGORICAL, 0, None),
    },
    "nycflights13/planes.csv": {
        "tailnum": (ColumnKind.IDENTIFIER, 0, None),
        "year": (ColumnKind.CONTINUOUS, 70, None),
        "speed": (ColumnKind.CONTINUOUS, 3_299, None),
    },
    "nycflights13/airports.csv": {
        "faa": (ColumnKind.IDENTIFIER, 0, None),
        "tzone": (ColumnKind.CATEGORICAL, 3, None),
    },
    "kddcup99_10pct.csv.gz": {
        "protocol_type": (ColumnKind.CATEGORICAL, 0, None),
        "service": (ColumnKind.CATEGORICAL, 0, None),
        "label": (ColumnKind.CATEGORICAL, 0, None),
        "src_bytes": (ColumnKind.CONTINUOUS, 0, None),
        "serror_rate": (ColumnKind.CONTINUOUS, 0, None),
    },
}


def _dataset_files() -> list[str]:
    found = set(EXPECTED_SHAPES)
    if DATASETS.is_dir():
        for path in [*DATASETS.rglob("*.csv"), *DATASETS.rglob("*.csv.gz")]:
            found.add(path.relative_to(DATASETS).as_posix())
    return sorted(found)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def chunks(data: bytes, size: int = MB) -> Iterable[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def upload(repo: DatasetRepository, data: bytes, *, chunk_size: int = MB, name: str = "t", **kw: Any) -> DatasetInfo:
    with repo.begin_upload(name, **kw) as up:
        for chunk in chunks(data, chunk_size):
            up.write(chunk)
        return up.commit()


def leftovers(store: ArtifactStore) -> list[Path]:
    """Anything a refused upload could have left: items, staging folders, files."""
    found = list((store.root / "datasets").iterdir())
    staging = store.root / ".staging"
    found += [p for p in staging.rglob("*") if p.is_file() or p.name.startswith("tmp")]
    return found


def refused(
    repo: DatasetRepository,
    store: ArtifactStore,
    data: bytes,
    error: type[SynthError] = InvalidArgument,
    *,
    chunk_size: int = MB,
    **kw: Any,
) -> SynthError:
    with pytest.raises(error) as caught:
        upload(repo, data, chunk_size=chunk_size, **kw)
    assert leftovers(store) == [], "a refused upload left something in the store"
    return caught.value


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def good_rows(n: int = 12) -> list[list[object]]:
    colours = ["red", "green", "blue"]
    return [[i, f"{i * 1.5:.1f}", colours[i % 3]] for i in range(n)]


GOOD = table(["n", "x", "colour"], good_rows())


def paths(error: SynthError) -> list[str]:
    return [v.field for v in error.violations]


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


@pytest.fixture
def repo(store: ArtifactStore) -> DatasetRepository:
    return DatasetRepository(store)


@pytest.fixture(scope="module")
def adult(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetRepository, DatasetInfo]:
    repo = DatasetRepository(ArtifactStore(tmp_path_factory.mktemp("adult") / "store"))
    return repo, upload(repo, ADULT.read_bytes(), name="adult")


# ---------------------------------------------------------------------------
# real datasets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", _dataset_files())
def test_real_dataset_uploads_with_the_documented_shape(repo: DatasetRepository, relpath: str) -> None:
    path = DATASETS / relpath
    raw = path.read_bytes()
    info = upload(repo, raw, name=relpath)

    if relpath in EXPECTED_SHAPES:
        assert (info.row_count, info.column_count) == EXPECTED_SHAPES[relpath]
    else:  # a file the README table does not list yet: agree with pandas
        frame = pd.read_csv(path)
        assert (info.row_count, info.column_count) == frame.shape
    assert len(info.columns) == info.column_count
    assert info.display_name == relpath
    # Normalised UTF-8 without a BOM: the stored bytes are the (decompressed) upload.
    plain = gzip.decompress(raw) if relpath.endswith(".gz") else raw
    assert info.fingerprint == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert info.size_bytes == len(plain)
    for name, (kind, missing, fmt) in EXPECTED_COLUMNS.get(relpath, {}).items():
        col = info.column(name)
        assert col.kind is kind, name
        if missing is not None:
            assert col.missing_count == missing, name
        assert col.datetime_format == fmt, name
    assert repo.get(info.id) == info


def test_adult_kinds_and_missing_counts(adult: tuple[DatasetRepository, DatasetInfo]) -> None:
    _, info = adult
    assert (info.row_count, info.column_count) == (32_561, 15)
    kinds = {c.name: c.kind for c in info.columns}
    for name in ["age", "fnlwgt", "capital_gain", "capital_loss", "hours_per_week"]:
        assert kinds[name] is ColumnKind.CONTINUOUS, name
        assert info.column(name).integer, name
    for name in [
        "workclass",
        "education",
        "marital_status",
        "occupation",
        "relationship",
        "race",
        "sex",
        "native_country",
        "income",
    ]:
        assert kinds[name] is ColumnKind.CATEGORICAL, name
    assert kinds["education_num"] in {ColumnKind.CONTINUOUS, ColumnKind.CATEGORICAL}
    missing = {c.name: c.missing_count for c in info.columns}
    assert missing["workclass"] == 1_836
    assert missing["occupation"] == 1_843
    assert missing["native_country"] == 583
    assert sum(missing.values()) == 1_836 + 1_843 + 583
    income = info.column("income")
    assert income.categories == ["<=50K", ">50K"]  # most frequent first
    assert "?" not in info.column("workclass").categories
    age = info.column("age")
    assert (age.minimum, age.maximum) == (17.0, 90.0)
    assert info.missing_markers == list(DEFAULT_MISSING_MARKERS)
    assert info.source_encoding == "utf-8"


def test_adult_load_frame_dtypes(adult: tuple[DatasetRepository, DatasetInfo]) -> None:
    repo, info = adult
    frame = repo.load_frame(info.id)
    assert frame.shape == (32_561, 15)
    assert list(frame.columns) == [c.name for c in info.columns]
    for name in ["age", "fnlwgt", "capital_gain", "capital_loss", "hours_per_week"]:
        assert str(frame[name].dtype) == "Int64", name
    assert frame["workclass"].dtype == object
    assert frame["workclass"].isna().sum() == 1_836
    assert frame["workclass"].map(lambda v: v is None or isinstance(v, str)).all()
    assert frame["occupation"].isna().sum() == 1_843
    assert int(frame["age"].min()) == 17
    assert frame["income"].value_counts().to_dict() == {"<=50K": 24_720, ">50K": 7_841}


def test_adult_preview_shows_missing_cells_as_none(adult: tuple[DatasetRepository, DatasetInfo]) -> None:
    repo, info = adult
    names, rows = repo.preview(info.id, rows=100)
    assert names == [c.name for c in info.columns]
    assert len(rows) == 100
    assert all(len(r) == 15 for r in rows)
    raw = pd.read_csv(ADULT, dtype=str, keep_default_na=False, nrows=100)
    workclass = names.index("workclass")
    expected = [None if v == "?" else v for v in raw["workclass"]]
    assert [r[workclass] for r in rows] == expected
    assert None in expected
    assert rows[0][0] == "39"
    assert len(repo.preview(info.id, rows=5000)[1]) == 1000  # capped


def test_dataset_info_round_trips_through_json(adult: tuple[DatasetRepository, DatasetInfo]) -> None:
    _, info = adult
    data = json.loads(json.dumps(info.to_dict()))
    assert DatasetInfo.from_dict(data) == info
    col = info.columns[1]
    assert ColumnInfo.from_dict(col.to_dict()) == col
    assert data["columns"][1]["kind"] == "categorical"
    assert data["columns"][1]["kind_reason"] == "text with 8 distinct values"


# ---------------------------------------------------------------------------
# encodings and compression
# ---------------------------------------------------------------------------


def test_invalid_utf8_names_byte_offset_and_line(repo: DatasetRepository, store: ArtifactStore) -> None:
    rows = good_rows()
    rows[4][2] = "caf\u00e9"
    data = table(["n", "x", "colour"], rows)
    latin = data.decode("utf-8").encode("latin-1")
    offset = latin.index(b"\xe9")
    err = refused(repo, store, latin)
    assert f"byte offset {offset}" in err.message
    assert "line 6" in err.message  # header is line 1, fifth data row is line 6
    assert "latin-1" in err.message  # the hint
    assert paths(err) == ["encoding"]
    assert err.reason == "INVALID_ENCODING"


def test_invalid_utf8_offset_is_exact_across_chunks(repo: DatasetRepository, store: ArtifactStore) -> None:
    body = b"a,b\n" + b"".join(b"%d,\xc3\xa9\n" % i for i in range(50)) + b"9,\xc3\n10,x\n"
    bad = body.index(b"\xc3\n")
    err = refused(repo, store, body, chunk_size=7)  # a multi-byte char split between chunks
    assert f"byte offset {bad}" in err.message
    assert "line 52" in err.message


def test_latin1_upload_succeeds_when_declared(repo: DatasetRepository, store: ArtifactStore) -> None:
    rows = good_rows()
    rows[4][2] = "caf\u00e9"
    latin = table(["n", "x", "colour"], rows).decode("utf-8").encode("latin-1")
    info = upload(repo, latin, encoding="latin-1")
    assert info.source_encoding == "iso8859-1"
    assert "caf\u00e9" in info.column("colour").categories
    _, preview = repo.preview(info.id, rows=12)
    assert preview[4][2] == "caf\u00e9"
    stored = (store.path("datasets", info.id) / "table.csv").read_bytes()
    assert "caf\u00e9".encode() in stored  # stored as UTF-8
    assert info.fingerprint == "sha256:" + hashlib.sha256(stored).hexdigest()


@pytest.mark.parametrize("encoding", ["no-such-codec", "base64", ""])
def test_unknown_encoding_is_refused_up_front(repo: DatasetRepository, store: ArtifactStore, encoding: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        repo.begin_upload("t", encoding=encoding)
    assert paths(caught.value) == ["encoding"]
    assert leftovers(store) == []


def test_utf8_bom_is_stripped(repo: DatasetRepository) -> None:
    info = upload(repo, b"\xef\xbb\xbf" + GOOD)
    assert [c.name for c in info.columns] == ["n", "x", "colour"]
    assert info.fingerprint == "sha256:" + hashlib.sha256(GOOD).hexdigest()


def test_utf16_with_bom_is_normalised_to_utf8(repo: DatasetRepository) -> None:
    info = upload(repo, GOOD.decode().encode("utf-16"), encoding="utf-16")
    assert [c.name for c in info.columns] == ["n", "x", "colour"]
    assert info.fingerprint == "sha256:" + hashlib.sha256(GOOD).hexdigest()


@pytest.mark.parametrize("chunk_size", [1, 3, MB])
def test_gzip_upload_is_decompressed(repo: DatasetRepository, chunk_size: int) -> None:
    info = upload(repo, gzip.compress(GOOD), chunk_size=chunk_size)
    assert info.row_count == 12
    assert info.fingerprint == "sha256:" + hashlib.sha256(GOOD).hexdigest()


def test_multi_member_gzip_is_read_whole(repo: DatasetRepository) -> None:
    half = GOOD.index(b"\n", len(GOOD) // 2) + 1
    info = upload(repo, gzip.compress(GOOD[:half]) + gzip.compress(GOOD[half:]), chunk_size=5)
    assert info.row_count == 12


def test_truncated_gzip_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    packed = gzip.compress(GOOD)
    err = refused(repo, store, packed[: len(packed) - 12])
    assert "truncated" in err.message


def test_corrupt_gzip_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    packed = bytearray(gzip.compress(GOOD * 3))
    packed[20:40] = b"\xff" * 20
    err = refused(repo, store, bytes(packed))
    assert "gzip" in err.message


def test_gzip_bomb_stops_at_the_decompressed_limit(store: ArtifactStore) -> None:
    repo = DatasetRepository(store, IntakeLimits(max_bytes=200_000))
    big = table(["a", "b"], ([i % 7, "x" * 50] for i in range(60_000)))  # ~3.4 MB
    packed = gzip.compress(big, compresslevel=9)
    assert len(packed) < 200_000
    written = 0
    with pytest.raises(ResourceExhausted) as caught:
        with repo.begin_upload("bomb") as up:
            for chunk in chunks(packed, 4096):
                up.write(chunk)
                written += len(chunk)
            up.commit()
    assert written < len(packed)  # refused mid-stream, before the upload ended
    assert "decompressed" in caught.value.message
    assert "SYNTH_TRAINER_MAX_UPLOAD_BYTES" in caught.value.message
    assert leftovers(store) == []


def test_zip_archive_is_refused_with_a_hint(repo: DatasetRepository, store: ArtifactStore) -> None:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("t.csv", GOOD)
    err = refused(repo, store, buf.getvalue())
    assert "ZIP" in err.message and "CSV" in err.message


def test_binary_content_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    err = refused(repo, store, GOOD + b"1,2,\x00\x01\x02\n")
    assert "NUL" in err.message and "line 14" in err.message


# ---------------------------------------------------------------------------
# size limit
# ---------------------------------------------------------------------------


def test_size_limit_is_enforced_mid_stream(store: ArtifactStore) -> None:
    repo = DatasetRepository(store, IntakeLimits(max_bytes=1000))
    data = table(["n", "x", "colour"], good_rows(200))
    assert len(data) > 1000
    up = repo.begin_upload("big")
    up.write(data[:600])
    up.write(data[600:1000])  # exactly at the limit: fine
    assert up.bytes_received == 1000
    with pytest.raises(ResourceExhausted) as caught:
        up.write(data[1000:1001])
    assert "MB" in caught.value.message
    assert "SYNTH_TRAINER_MAX_UPLOAD_BYTES" in caught.value.message
    assert caught.value.metadata["max_bytes"] == "1000"
    assert leftovers(store) == []
    with pytest.raises(FailedPrecondition):
        up.write(b"more")
    with pytest.raises(FailedPrecondition):
        up.commit()


def test_limit_message_names_the_limit_in_mb(store: ArtifactStore) -> None:
    assert IntakeLimits().max_bytes == 100 * MB
    repo = DatasetRepository(store, IntakeLimits(max_bytes=3 * MB))
    with pytest.raises(ResourceExhausted, match="3 MB"):
        upload(repo, GOOD * (3 * MB // len(GOOD) + 1))
    assert leftovers(store) == []


# ---------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------


def test_empty_file_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    err = refused(repo, store, b"")
    assert "empty table: no data rows" in err.message
    err = refused(repo, store, b"\n\n  \n")
    assert "empty table: no data rows" in err.message


def test_header_only_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    err = refused(repo, store, b"a,b,c\n")
    assert "empty table: no data rows" in err.message
    assert "header" in err.message


def test_blank_header_name_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    err = refused(repo, store, table(["n", " ", "colour"], good_rows()))
    assert "column 2" in err.message and "no name" in err.message
    assert paths(err) == ["columns[1]"]


def test_duplicate_header_names_are_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    rows = [[*r, r[0]] for r in good_rows()]
    err = refused(repo, store, table(["n", "x", "colour", "n"], rows))
    assert "'n'" in err.message and "columns 1, 4" in err.message
    assert paths(err) == ["columns[3]"]


def test_short_row_is_refused_with_its_line(repo: DatasetRepository, store: ArtifactStore) -> None:
    lines = GOOD.decode().splitlines()
    lines[7] = "7,10.5"  # pandas would pad this row silently
    err = refused(repo, store, "\n".join(lines).encode() + b"\n")
    assert "line 8" in err.message
    assert "2 fields" in err.message and "header has 3" in err.message
    assert paths(err) == ["rows[6]"]
    assert err.reason == "RAGGED_ROWS"


def test_long_row_is_refused_with_its_line(repo: DatasetRepository, store: ArtifactStore) -> None:
    data = GOOD + b"12,1.0,red,surprise\n"
    err = refused(repo, store, data)
    assert "line 14" in err.message and "4 fields" in err.message


def test_ragged_rows_report_at_most_ten(repo: DatasetRepository, store: ArtifactStore) -> None:
    data = table(["a", "b", "c"], [[1, 2] if i % 2 else [1, 2, 3] for i in range(60)])
    err = refused(repo, store, data)
    assert len(err.violations) == 10
    assert "30 rows" in err.message
    assert "line 3" in err.message  # the first bad row
    assert err.violations[0].field == "rows[1]"
    assert "line 3" in err.violations[0].description


def test_line_numbers_count_blank_lines_and_multiline_cells(repo: DatasetRepository, store: ArtifactStore) -> None:
    data = b'a,b\n\n1,"two\nlines"\n\n2,x\r\n3,y,z\n'
    err = refused(repo, store, data)
    assert "line 7" in err.message


def test_unterminated_quote_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    data = GOOD + b'12,"1.0,red\n13,2.0,blue\n'
    err = refused(repo, store, data)
    assert "line 14" in err.message and "never closed" in err.message


def test_text_after_a_closing_quote_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    data = GOOD + b'12,"1.0"x,red\n'
    err = refused(repo, store, data)
    assert "line 14" in err.message


def test_old_mac_line_endings_are_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    err = refused(repo, store, GOOD.replace(b"\n", b"\r"))
    assert "line 1" in err.message and "\\r" in err.message


def test_whitespace_lines_are_skipped_but_a_quoted_empty_line_is_a_row(
    repo: DatasetRepository, store: ArtifactStore
) -> None:
    err = refused(repo, store, GOOD + b'""\n')
    assert "line 14" in err.message and "1 field," in err.message
    assert upload(repo, GOOD + b"  \n\t\n").row_count == 12


def test_override_error_line_accounts_for_blank_lines_and_multiline_cells(
    repo: DatasetRepository, store: ArtifactStore
) -> None:
    rows = [f'{i},"note\n{i}",{i}.5' for i in range(12)]
    rows[9] = '9,"note",oops'
    data = ("\n\nn,note,x\n" + "\n".join(rows) + "\n").encode()
    err = refused(repo, store, data, kind_overrides={"x": "continuous"})
    # header on line 3; rows 1-9 take two lines each (lines 4-21); row 10 starts on line 22
    assert "row 10 (line 22)" in err.message and "'oops'" in err.message


def test_too_few_rows_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    err = refused(repo, store, table(["n", "x", "colour"], good_rows(9)))
    assert "too few rows to learn from" in err.message
    assert "9" in err.message and "10" in err.message


def test_min_rows_is_configurable(store: ArtifactStore) -> None:
    repo = DatasetRepository(store, IntakeLimits(min_rows=3))
    assert upload(repo, table(["n", "x", "colour"], good_rows(3))).row_count == 3


def test_single_column_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    err = refused(repo, store, table(["n"], [[i] for i in range(20)]))
    assert "at least two columns are needed" in err.message
    err = refused(repo, store, table(["a;b"], [[f"{i};{i}"] for i in range(20)]))
    assert "';'" in err.message


def test_too_many_columns_is_refused(store: ArtifactStore) -> None:
    repo = DatasetRepository(store, IntakeLimits(max_columns=3))
    err = refused(repo, store, table(list("abcd"), [[1, 2, 3, 4]] * 12))
    assert "4 columns" in err.message and "at most 3" in err.message


def test_all_missing_column_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    rows = [[*r, "NA" if i % 2 else ""] for i, r in enumerate(good_rows())]
    err = refused(repo, store, table(["n", "x", "colour", "notes"], rows))
    assert "'notes'" in err.message and "every row" in err.message
    assert paths(err) == ['columns["notes"]']


def test_parses_quoted_newlines_crlf_and_blank_lines(repo: DatasetRepository) -> None:
    rows = [f'{i},"line one\r\nline ""two""",{i % 3}' for i in range(12)]
    data = ("id_,text,k\r\n\r\n" + "\r\n".join(rows) + "\r\n\r\n").encode()
    info = upload(repo, data)
    assert info.row_count == 12
    _, preview = repo.preview(info.id, rows=1)
    assert preview[0][1] == 'line one\r\nline "two"'


# ---------------------------------------------------------------------------
# missing values
# ---------------------------------------------------------------------------


def test_default_markers_are_counted_and_rows_kept(repo: DatasetRepository) -> None:
    markers = ["", "?", "NA", "N/A", "NaN", "nan", "null", "NULL"]
    rows = [[i, markers[i % 8] if i % 2 else f"{i}.5", "a" if i % 3 else markers[i % 8]] for i in range(40)]
    info = upload(repo, table(["n", "x", "c"], rows))
    assert info.row_count == 40
    assert info.column("x").missing_count == 20
    assert info.column("x").kind is ColumnKind.CONTINUOUS
    assert info.column("c").missing_count == 14
    frame = repo.load_frame(info.id)
    assert len(frame) == 40
    assert frame["x"].isna().sum() == 20
    assert frame["c"].isna().sum() == 14


def test_custom_markers_replace_the_defaults(repo: DatasetRepository) -> None:
    rows = [[i, "-" if i % 4 == 0 else i * 2, "NA" if i % 5 == 0 else "b"] for i in range(20)]
    info = upload(repo, table(["n", "x", "c"], rows), missing_markers=["-"])
    assert info.missing_markers == ["", "-"]  # an empty cell is always missing
    assert info.column("x").missing_count == 5
    assert info.column("x").kind is ColumnKind.CONTINUOUS
    assert info.column("c").missing_count == 0  # "NA" is a value here
    assert sorted(info.column("c").categories) == ["NA", "b"]
    _, preview = repo.preview(info.id, rows=20)
    assert preview[0][1] is None and preview[0][2] == "NA"


# ---------------------------------------------------------------------------
# overrides
# ---------------------------------------------------------------------------


def test_override_of_an_unknown_column_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    err = refused(repo, store, GOOD, kind_overrides={"colour": "categorical", "nope": ColumnKind.CONTINUOUS})
    assert "'nope'" in err.message
    assert paths(err) == ['kind_overrides["nope"]']


def test_override_with_an_unknown_kind_is_refused(repo: DatasetRepository) -> None:
    with pytest.raises(InvalidArgument, match="unknown column kind"):
        repo.begin_upload("t", kind_overrides={"x": "numberish"})


def test_continuous_override_names_the_first_bad_row(repo: DatasetRepository, store: ArtifactStore) -> None:
    rows = good_rows(30)
    rows[17][2] = "n/a-ish"
    err = refused(repo, store, table(["n", "x", "colour"], rows), kind_overrides={"colour": "continuous"})
    assert "'colour'" in err.message
    assert "row 1 " in err.message and "'red'" in err.message  # the first non-number
    assert "line 2" in err.message
    assert 'columns["colour"]' in paths(err) and "rows[0].colour" in paths(err)


def test_datetime_override_names_the_first_bad_row(repo: DatasetRepository, store: ArtifactStore) -> None:
    rows = [[i, f"2024-01-{i + 1:02d}", "x"] for i in range(20)]
    rows[13][1] = "2024-13-45"
    data = table(["n", "when", "c"], rows)
    err = refused(repo, store, data, kind_overrides={"when": ColumnKind.DATETIME})
    assert "'when'" in err.message and "row 14" in err.message and "2024-13-45" in err.message
    assert "line 15" in err.message
    when = upload(repo, data).column("when")
    assert when.kind is ColumnKind.IDENTIFIER  # not inferred as datetime; 20 distinct texts in 20 rows
    assert when.kind_reason.startswith("near-unique text (20 distinct in 20 rows)")


def test_overrides_are_applied_and_flagged(repo: DatasetRepository) -> None:
    rows = [[i, i % 3, f"2024-01-{i + 1:02d}", f"c{i % 4}"] for i in range(20)]
    overrides = {"k": ColumnKind.CONTINUOUS, "n": "categorical", "day": ColumnKind.CATEGORICAL}
    info = upload(repo, table(["n", "k", "day", "c"], rows), kind_overrides=overrides)
    n, k, day, c = info.columns
    assert (k.kind, k.overridden, k.integer, k.maximum) == (ColumnKind.CONTINUOUS, True, True, 2.0)
    assert (n.kind, n.overridden, len(n.categories)) == (ColumnKind.CATEGORICAL, True, 20)
    assert (day.kind, day.overridden, day.datetime_format) == (ColumnKind.CATEGORICAL, True, None)
    assert (c.kind, c.overridden) == (ColumnKind.CATEGORICAL, False)
    frame = repo.load_frame(info.id)
    assert str(frame["k"].dtype) == "Int64" and frame["n"].dtype == object


def test_datetime_override_on_year_numbers(repo: DatasetRepository) -> None:
    rows = [[i, 1990 + i, "x"] for i in range(12)]
    info = upload(repo, table(["n", "year", "c"], rows), kind_overrides={"year": "datetime"})
    year = info.column("year")
    assert (year.kind, year.datetime_format) == (ColumnKind.DATETIME, "%Y")
    frame = repo.load_frame(info.id)
    assert frame["year"].dt.year.tolist() == list(range(1990, 2002))


# ---------------------------------------------------------------------------
# inference rules
# ---------------------------------------------------------------------------


def _infer(repo: DatasetRepository, values: Sequence[object], name: str = "v") -> ColumnInfo:
    rows = [[i, v] for i, v in enumerate(values)]
    return upload(repo, table(["row", name], rows)).column(name)


@pytest.mark.parametrize(
    ("values", "fmt"),
    [
        (["2013-01-01T10:00:00Z", "2013-06-30T23:59:59Z"], "%Y-%m-%dT%H:%M:%SZ"),
        (["2013-01-01T10:00:00.250Z", "2013-06-30T23:59:59.000Z"], "%Y-%m-%dT%H:%M:%S.%fZ"),
        (["2013-01-01T10:00:00", "2013-06-30T23:59:59"], "%Y-%m-%dT%H:%M:%S"),
        (["2013-01-01T10:00:00+02:00", "2013-06-30T23:59:59-05:00"], "%Y-%m-%dT%H:%M:%S%z"),
        (["2019-03-23 20:21:09", "2019-03-04 16:11:55"], "%Y-%m-%d %H:%M:%S"),
        (["2019-03-23", "2019-12-04"], "%Y-%m-%d"),
        (["20141013T000000", "20150227T120000"], "%Y%m%dT%H%M%S"),
        (["01/13/2014", "12/01/2014"], "%m/%d/%Y"),
        (["13/01/2014 10:30", "01/12/2014 08:00"], "%d/%m/%Y %H:%M"),
    ],
)
def test_datetime_formats_are_detected(repo: DatasetRepository, values: list[str], fmt: str) -> None:
    col = _infer(repo, values * 6, name="when")
    assert (col.kind, col.datetime_format) == (ColumnKind.DATETIME, fmt)
    assert col.minimum is not None and col.maximum is not None and col.minimum <= col.maximum


def test_datetime_bounds_are_epoch_seconds_and_frame_is_datetime64(repo: DatasetRepository) -> None:
    rows = [[i, f"2020-01-0{1 + i % 9} 00:00:00" if i != 5 else "NA"] for i in range(12)]
    info = upload(repo, table(["n", "t"], rows))
    col = info.column("t")
    assert col.minimum == 1_577_836_800.0  # 2020-01-01T00:00:00Z
    assert col.missing_count == 1
    frame = repo.load_frame(info.id)
    assert str(frame["t"].dtype) == "datetime64[ns]"
    assert frame["t"].isna().sum() == 1


def test_small_integer_codes_are_categorical(repo: DatasetRepository) -> None:
    col = _infer(repo, [i % 3 for i in range(30)])
    assert col.kind is ColumnKind.CATEGORICAL and col.integer
    assert col.categories == ["0", "1", "2"]


def test_many_integers_are_continuous_and_floats_not_integer(repo: DatasetRepository) -> None:
    assert _infer(repo, list(range(0, 300, 7))).kind is ColumnKind.CONTINUOUS
    col = _infer(repo, [i / 4 for i in range(40)])
    assert col.kind is ColumnKind.CONTINUOUS and not col.integer


def test_integer_ids_by_name(repo: DatasetRepository) -> None:
    ids = [1000 + i for i in range(30)]
    assert _infer(repo, ids, name="customer_id").kind is ColumnKind.IDENTIFIER
    assert _infer(repo, ids, name="CustomerID").kind is ColumnKind.IDENTIFIER
    assert _infer(repo, ids, name="paid").kind is ColumnKind.CONTINUOUS


def test_text_identifiers(repo: DatasetRepository) -> None:
    tokens = [hashlib.md5(str(i).encode()).hexdigest()[:12] for i in range(60)]
    assert _infer(repo, tokens, name="ref").kind is ColumnKind.IDENTIFIER
    assert _infer(repo, tokens[:20], name="ref").kind is ColumnKind.IDENTIFIER  # near-unique text
    assert _infer(repo, tokens[:19], name="ref").kind is ColumnKind.CATEGORICAL  # too few rows to tell
    assert _infer(repo, [f"u{i % 5}" for i in range(20)], name="user_key").kind is ColumnKind.CATEGORICAL
    assert _infer(repo, [f"u{i % 15}" for i in range(20)], name="user_key").kind is ColumnKind.IDENTIFIER


def test_free_text(repo: DatasetRepository) -> None:
    notes = [f"patient {i} reported mild symptoms after visit" for i in range(20)]
    assert _infer(repo, notes, name="notes").kind is ColumnKind.FREE_TEXT
    zones = ["Upper West Side", "Midtown East", "Lenox Hill"] * 7
    assert _infer(repo, zones, name="zone").kind is ColumnKind.CATEGORICAL


def test_infinite_values_are_not_numbers(repo: DatasetRepository) -> None:
    col = _infer(repo, ["1.5", "inf", "2.5"] * 5)
    assert col.kind is ColumnKind.CATEGORICAL


# ---------------------------------------------------------------------------
# inference on messy data: integer codes, near-unique text, kind reasons
# ---------------------------------------------------------------------------


def _skewed(levels: Sequence[object], rows: int, seed: int = 0) -> list[object]:
    """``rows`` draws from ``levels``, the first most frequent (as real codes
    are), every level present at least once."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(levels) + 1)
    drawn = rng.choice(len(levels), size=rows - len(levels), p=weights / weights.sum())
    order = [*range(len(levels)), *drawn.tolist()]
    rng.shuffle(order)
    return [levels[i] for i in order]


@pytest.mark.parametrize(
    ("name", "distinct"),
    [("Browser", 13), ("TrafficType", 20), ("grade", 12), ("Region", 9), ("level", 20)],
)
def test_integer_codes_up_to_twenty_are_categorical(repo: DatasetRepository, name: str, distinct: int) -> None:
    # UCI online shoppers: Browser has 13 codes, TrafficType 20, Region 9; King County grade 12.
    col = _infer(repo, _skewed(list(range(1, distinct + 1)), 600), name=name)
    assert (col.kind, col.integer, col.distinct_count) == (ColumnKind.CATEGORICAL, True, distinct)
    assert sorted(col.categories, key=int) == [str(v) for v in range(1, distinct + 1)]
    assert col.kind_reason == f"integer codes: {distinct} distinct values"


def test_integers_that_do_not_repeat_or_have_many_values_stay_continuous(repo: DatasetRepository) -> None:
    col = _infer(repo, _skewed(list(range(1, 22)), 600), name="level")  # 21 values, neutral name
    assert col.kind is ColumnKind.CONTINUOUS
    assert col.kind_reason == "whole numbers with 21 distinct values"
    # 13 values in 23 rows (nycflights planes.speed): measurements, not repeated codes.
    speeds = [90, 105, 108, 112, 126, 127, 136, 139, 142, 162, 167, 236, 432] + [105, 126] * 5
    assert _infer(repo, speeds, name="speed").kind is ColumnKind.CONTINUOUS


@pytest.mark.parametrize("name", ["zipcode", "zip", "ZipCode", "postal_code", "PostCode", "region", "property_type"])
def test_integers_named_as_codes_are_categorical_up_to_200_values(repo: DatasetRepository, name: str) -> None:
    zips = list(range(98001, 98200, 2))[:70]  # 70 values from 98001, like King County zipcode
    col = _infer(repo, _skewed(zips, 2000), name=name)
    assert (col.kind, col.distinct_count) == (ColumnKind.CATEGORICAL, 70)
    assert col.kind_reason.startswith("integer codes named like a code (")
    assert col.kind_reason.endswith("): 70 distinct values")
    # The same numbers under a name that does not say "code" are continuous.
    assert _infer(repo, _skewed(zips, 2000), name="amount").kind is ColumnKind.CONTINUOUS
    # Codes must repeat: 70 codes in 100 rows are not learnable categories.
    assert _infer(repo, _skewed(zips, 100), name=name).kind is ColumnKind.CONTINUOUS


def test_named_codes_stop_at_200_values(repo: DatasetRepository) -> None:
    codes = list(range(1000, 1201))  # 201 values
    assert _infer(repo, _skewed(codes, 3000), name="product_code").kind is ColumnKind.CONTINUOUS
    assert _infer(repo, _skewed(codes[:200], 3000), name="product_code").kind is ColumnKind.CATEGORICAL


def test_age_like_integers_stay_continuous(repo: DatasetRepository) -> None:
    ages = _skewed(list(range(17, 90)), 3000)  # 73 values, like Adult age
    col = _infer(repo, ages, name="age")
    assert (col.kind, col.integer, col.minimum, col.maximum) == (ColumnKind.CONTINUOUS, True, 17.0, 89.0)
    assert col.kind_reason == "whole numbers with 73 distinct values"
    assert _infer(repo, _skewed(list(range(1900, 2016)), 3000), name="yr_built").kind is ColumnKind.CONTINUOUS


@pytest.mark.parametrize("name", ["capital_gain", "yr_renovated", "loss_class", "claim_status"])
def test_zero_inflated_integers_stay_continuous(repo: DatasetRepository, name: str) -> None:
    # Like Adult capital_gain (119 values, 92% zeros) or yr_renovated (70 values, 96% zeros):
    # an amount, even when its name ends in a code-like word.
    amounts = [0] * 2700 + _skewed(list(range(100, 10_000, 100)), 300)  # 100 distinct, 90% zeros
    col = _infer(repo, amounts, name=name)
    assert (col.kind, col.distinct_count) == (ColumnKind.CONTINUOUS, 100)
    if name.endswith(("class", "status")):
        assert (
            col.kind_reason
            == "whole numbers with 100 distinct values, mostly 0 (an amount, not codes, despite the name)"
        )
    else:
        assert col.kind_reason == "whole numbers with 100 distinct values"
    # Without the zeros, the code-like names are codes.
    nonzero = _skewed(list(range(100, 10_000, 100)), 3000)
    expected = ColumnKind.CATEGORICAL if name.endswith(("class", "status")) else ColumnKind.CONTINUOUS
    assert _infer(repo, nonzero, name=name).kind is expected


def test_zero_inflated_integers_with_an_unambiguous_code_name_are_codes(repo: DatasetRepository) -> None:
    codes = [0] * 2000 + _skewed(list(range(100, 160)), 1000)  # "0 = no error", then 60 error codes
    col = _infer(repo, codes, name="error_code")
    assert col.kind is ColumnKind.CATEGORICAL
    assert col.kind_reason == "integer codes named like a code ('code'): 61 distinct values"


def _tickets(rng: np.random.Generator, n: int) -> list[str]:
    prefixes = ["A/5 ", "PC ", "STON/O2. ", "", "", "", "", "", "", "", "", ""]  # about 1 in 4, as in Titanic
    return [
        f"{prefixes[i % len(prefixes)]}{v}"
        for i, v in enumerate((1000 + rng.choice(3_200_000, n, replace=False)).tolist())
    ]


def test_near_unique_ticket_text_is_an_identifier(repo: DatasetRepository) -> None:
    # Kaggle Titanic Ticket: 681 distinct in 891 rows (families share a ticket).
    rng = np.random.default_rng(11)
    distinct = _tickets(rng, 681)
    values = distinct + rng.choice(distinct[:120], 891 - 681).tolist()
    assert len(set(values)) == 681
    col = _infer(repo, values, name="Ticket")
    assert col.kind is ColumnKind.IDENTIFIER
    assert col.categories == []  # nothing real is kept to be learned or re-emitted
    assert col.kind_reason == (
        "near-unique text (681 distinct in 891 rows): treated as an identifier and not learned, "
        "so no real value is copied"
    )


def test_near_unique_text_with_missing_cells_is_an_identifier(repo: DatasetRepository) -> None:
    # Kaggle Titanic Cabin: 147 distinct in 204 non-missing of 891 rows, some with several cabins.
    decks = "ABCDEFG"
    cabins = [f"{decks[i % 7]}{i + 2}" for i in range(140)]
    cabins += [f"C{i} C{i + 2} C{i + 4}" for i in (23, 62, 22)] + ["F G73", "F G63", "B57 B59 B63 B66", "T"]
    values: list[str] = cabins + [cabins[i] for i in range(57)] + [""] * (891 - 204)
    col = _infer(repo, values, name="Cabin")
    assert (col.kind, col.missing_count, col.distinct_count) == (ColumnKind.IDENTIFIER, 687, 147)
    assert col.kind_reason.startswith("near-unique text (147 distinct in 204 non-missing rows)")


def test_ordinary_text_categories_are_unaffected(repo: DatasetRepository) -> None:
    countries = [f"Country-{i}" for i in range(41)]  # Adult native_country: 41 values, 32k rows
    col = _infer(repo, _skewed(countries, 5000), name="native_country")
    assert (col.kind, len(col.categories)) == (ColumnKind.CATEGORICAL, 41)
    assert col.kind_reason == "text with 41 distinct values"
    # Many distinct values that still repeat (ratio 0.2) stay categories.
    zones = [f"zone {i}" for i in range(200)]
    assert _infer(repo, _skewed(zones, 1000), name="pickup_zone").kind is ColumnKind.CATEGORICAL


def test_small_tables_are_judged_by_the_same_ratio(repo: DatasetRepository) -> None:
    # 30 rows with 20 distinct categories: most values are seen once, so a model could
    # only copy them; flagged (a user who knows better overrides the kind).
    cats = [f"cat{i}" for i in range(20)]
    assert _infer(repo, cats + cats[:10], name="c").kind is ColumnKind.IDENTIFIER
    # 30 rows with 12 distinct (ratio 0.4): categories.
    assert _infer(repo, (cats[:12] * 3)[:30], name="c").kind is ColumnKind.CATEGORICAL
    # Fewer than 20 values: too few to conclude anything.
    assert _infer(repo, cats[:19], name="c").kind is ColumnKind.CATEGORICAL
    info = upload(
        repo, table(["row", "c"], [[i, v] for i, v in enumerate(cats + cats[:10])]), kind_overrides={"c": "categorical"}
    )
    col = info.column("c")
    assert (col.kind, col.overridden, col.kind_reason) == (ColumnKind.CATEGORICAL, True, "user override")


def test_free_text_keeps_its_rule_and_says_why(repo: DatasetRepository) -> None:
    notes = [f"patient {i} reported mild symptoms after visit" for i in range(40)]
    col = _infer(repo, notes, name="notes")
    assert col.kind is ColumnKind.FREE_TEXT
    assert col.kind_reason.startswith("free text (100% of values have several words")
    names = [f"Passenger, Mr. Number{i}" for i in range(40)]  # Titanic Name: multi-word, near-unique
    assert _infer(repo, names, name="Name").kind is ColumnKind.FREE_TEXT


def test_every_inferred_column_has_a_reason(repo: DatasetRepository) -> None:
    rows = [
        [f"{10 + i}", f"{i * 0.5}", i % 2, f"2021-05-{i + 1:02d}", f"a note number {i} with words"] for i in range(25)
    ]
    info = upload(repo, table(["row_id", "x", "flag", "day", "notes"], rows))
    assert [c.kind_reason for c in info.columns] == [
        "whole numbers named like an identifier (25 distinct in 25 rows): treated as an identifier and not "
        "learned, so no real value is copied",
        "numbers with 25 distinct values",
        "integer codes: 2 distinct values",
        "dates/times in the format %Y-%m-%d",
        "free text (100% of values have several words, mean length 27 characters): not learned",
    ]


def test_kind_reason_round_trips_and_old_dicts_load(repo: DatasetRepository) -> None:
    col = _infer(repo, [i % 3 for i in range(30)])
    data = json.loads(json.dumps(col.to_dict()))
    assert data["kind_reason"] == "integer codes: 3 distinct values"
    assert ColumnInfo.from_dict(data) == col
    del data["kind_reason"]  # a dataset.json stored before the field existed
    old = ColumnInfo.from_dict(data)
    assert old.kind_reason == "" and old.kind is ColumnKind.CATEGORICAL
    assert ColumnInfo.from_dict({**data, "kind_reason": None}).kind_reason == ""


def test_kind_reason_is_in_the_contract(repo: DatasetRepository) -> None:
    from services.common.convert import dataset_to_proto, schema_to_proto

    info = upload(repo, GOOD)
    schema = schema_to_proto(info.columns)
    assert [c.kind_reason for c in schema.columns] == [c.kind_reason for c in info.columns]
    assert all(c.kind_reason for c in schema.columns)
    assert dataset_to_proto(info).schema == schema
    old = ColumnInfo(name="x", kind=ColumnKind.CONTINUOUS, missing_count=0, distinct_count=3)
    assert schema_to_proto([old]).columns[0].kind_reason == ""


def test_adult_kind_reasons(adult: tuple[DatasetRepository, DatasetInfo]) -> None:
    _, info = adult
    reasons = {c.name: c.kind_reason for c in info.columns}
    assert reasons["age"] == "whole numbers with 73 distinct values"
    assert reasons["capital_gain"] == "whole numbers with 119 distinct values"
    assert reasons["hours_per_week"] == "whole numbers with 94 distinct values"
    assert reasons["native_country"] == "text with 41 distinct values"  # 42 with "?", which is missing
    assert reasons["income"] == "text with 2 distinct values"
    assert all(reasons.values())


@pytest.fixture(scope="module")
def kc_house(tmp_path_factory: pytest.TempPathFactory) -> DatasetInfo:
    repo = DatasetRepository(ArtifactStore(tmp_path_factory.mktemp("kc") / "store"))
    return upload(repo, KC_HOUSE_2000.read_bytes(), name="kc_house_2000")


def test_kc_house_fixture_kinds(kc_house: DatasetInfo) -> None:
    info = kc_house
    assert (info.row_count, info.column_count) == (2000, 21)
    kinds = {c.name: c.kind for c in info.columns}
    for name in ["zipcode", "grade", "waterfront", "view", "condition"]:
        assert kinds[name] is ColumnKind.CATEGORICAL, name
    for name in ["price", "sqft_living", "yr_built", "yr_renovated", "lat", "long"]:
        assert kinds[name] is ColumnKind.CONTINUOUS, name
    assert kinds["id"] is ColumnKind.IDENTIFIER
    assert kinds["date"] is ColumnKind.DATETIME
    zipcode = info.column("zipcode")
    assert zipcode.kind_reason == "integer codes named like a code ('zipcode'): 69 distinct values"
    assert all(c.startswith("98") and len(c) == 5 for c in zipcode.categories)
    assert info.column("id").kind_reason.startswith("whole numbers named like an identifier (1984 distinct")


# ---------------------------------------------------------------------------
# lifecycle, listing, deleting
# ---------------------------------------------------------------------------


def test_leaving_the_block_without_commit_leaves_nothing(repo: DatasetRepository, store: ArtifactStore) -> None:
    with repo.begin_upload("t") as up:
        up.write(GOOD)
    assert leftovers(store) == []
    with pytest.raises(RuntimeError):
        with repo.begin_upload("t") as up:
            up.write(GOOD)
            raise RuntimeError("client went away")
    assert leftovers(store) == []
    up = repo.begin_upload("t")
    up.write(GOOD)
    up.abort()
    up.abort()
    assert leftovers(store) == []
    with pytest.raises(FailedPrecondition):
        up.write(GOOD)


def test_committed_upload_is_closed(repo: DatasetRepository, store: ArtifactStore) -> None:
    with repo.begin_upload("t") as up:
        up.write(GOOD)
        assert up.sha256 == hashlib.sha256(GOOD).hexdigest()
        info = up.commit()
        with pytest.raises(FailedPrecondition):
            up.commit()
        with pytest.raises(FailedPrecondition):
            up.write(b"x")
    assert repo.get(info.id) == info
    assert [p.name for p in (store.root / "datasets").iterdir()] == [info.id]
    assert sorted(p.name for p in (store.root / "datasets" / info.id).iterdir()) == [
        ".created",
        "dataset.json",
        "table.csv",
    ]


def test_list_paginates_newest_first(repo: DatasetRepository) -> None:
    ids = []
    for i in range(3):
        ids.append(upload(repo, GOOD, name=f"t{i}").id)
        time.sleep(0.02)  # distinct folder mtimes even on coarse-clock filesystems
    page1, token = repo.list(page_size=2)
    assert [d.id for d in page1] == [ids[2], ids[1]]
    assert token
    page2, token2 = repo.list(page_size=2, page_token=token)
    assert [d.id for d in page2] == [ids[0]]
    assert token2 == ""
    everything, last = repo.list()  # page_size 0 -> default
    assert [d.id for d in everything] == ids[::-1] and last == ""
    assert [d.id for d in repo.list(page_size=5000)[0]] == ids[::-1]
    # A dataset deleted between pages does not shift the next page.
    repo.delete(ids[1])
    page2, _ = repo.list(page_size=2, page_token=token)
    assert [d.id for d in page2] == [ids[0]]


def test_list_refuses_bad_arguments(repo: DatasetRepository) -> None:
    with pytest.raises(InvalidArgument) as caught:
        repo.list(page_size=-1)
    assert paths(caught.value) == ["page_size"]
    for token in ["garbage!", "e30", "eyJ2IjoxfQ"]:
        with pytest.raises(InvalidArgument) as caught:
            repo.list(page_token=token)
        assert paths(caught.value) == ["page_token"]


def test_list_of_an_empty_store(repo: DatasetRepository) -> None:
    assert repo.list() == ([], "")


def test_delete(repo: DatasetRepository, store: ArtifactStore) -> None:
    info = upload(repo, GOOD)
    repo.delete(info.id)
    with pytest.raises(NotFound):
        repo.get(info.id)
    with pytest.raises(NotFound):
        repo.delete(info.id)
    with pytest.raises(NotFound):
        repo.preview(info.id)
    with pytest.raises(InvalidArgument):
        repo.get("../etc")
    with pytest.raises(InvalidArgument):
        repo.get("mdl-0123456789abcdef")
    assert leftovers(store) == []


def test_preview_refuses_bad_row_counts(repo: DatasetRepository) -> None:
    info = upload(repo, GOOD)
    for rows in [0, -3]:
        with pytest.raises(InvalidArgument):
            repo.preview(info.id, rows=rows)
    names, rows_ = repo.preview(info.id, rows=1)
    assert names == ["n", "x", "colour"] and rows_ == [["0", "0.0", "red"]]


def test_load_frame_refuses_a_tampered_table(repo: DatasetRepository, store: ArtifactStore) -> None:
    info = upload(repo, GOOD)
    path = store.path("datasets", info.id) / "table.csv"
    path.chmod(0o644)
    path.write_bytes(GOOD.replace(b"red", b"rod"))
    with pytest.raises(DataLoss):
        repo.load_frame(info.id)


def test_get_refuses_damaged_metadata(repo: DatasetRepository, store: ArtifactStore) -> None:
    info = upload(repo, GOOD)
    (store.path("datasets", info.id) / "dataset.json").write_text("{not json")
    with pytest.raises(DataLoss):
        repo.get(info.id)


def test_load_frame_types_every_kind(repo: DatasetRepository) -> None:
    rows = [
        [f"{10 + i}", f"{i * 0.5}", i % 2, f"2021-05-{i + 1:02d}", f"a note number {i} with words", f"k{i % 3}"]
        for i in range(12)
    ]
    rows[3][1] = "?"
    info = upload(repo, table(["row_id", "x", "flag", "day", "notes", "k"], rows))
    kinds = [c.kind for c in info.columns]
    assert kinds == [
        ColumnKind.IDENTIFIER,
        ColumnKind.CONTINUOUS,
        ColumnKind.CATEGORICAL,
        ColumnKind.DATETIME,
        ColumnKind.FREE_TEXT,
        ColumnKind.CATEGORICAL,
    ]
    frame = repo.load_frame(info.id)
    assert frame["row_id"].tolist()[:2] == ["10", "11"]
    assert frame["x"].dtype == np.float64 and np.isnan(frame["x"][3])
    assert frame["flag"].tolist()[:2] == ["0", "1"]
    assert str(frame["day"].dtype) == "datetime64[ns]"
    assert frame["notes"].dtype == object and frame["k"].dtype == object


def test_inflate_never_returns_more_than_a_block() -> None:
    # The decompressor is driven with max_length; check our understanding of zlib.
    d = zlib.decompressobj(wbits=31)
    out = d.decompress(gzip.compress(b"0" * (5 * MB)), MB)
    assert len(out) == MB and d.unconsumed_tail
