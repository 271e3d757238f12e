"""The upload (services.trainer.datasets.upload and .scan): encodings,
compression, the size limit, the CSV structure, missing values, the lifecycle.

Bad inputs are small hand-made tables. Every refused upload must leave the
store's datasets/ and .staging/ folders empty.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from pathlib import Path

import pytest

from services.common.dataset_store import MASK, DatasetRepository
from services.common.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from services.common.schema import ColumnKind
from services.common.store import ArtifactStore
from services.trainer.datasets import DatasetIntake, IntakeLimits
from tests.unit.dataset_helpers import GOOD, MB, chunks, good_rows, leftovers, paths, refused, table, upload


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


@pytest.fixture
def repo(store: ArtifactStore) -> DatasetRepository:
    return DatasetRepository(store)


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
    assert info.column("colour").withheld_categories == 4  # 12 rows, no colour in 5: all rare, none listed
    assert repo.load_frame(info.id)["colour"][4] == "caf\u00e9"
    _, preview, masked = repo.preview(info.id, rows=12)
    assert preview[4][2] == MASK and masked[4][2]
    stored = (store.path("datasets", info.id) / "table.csv").read_bytes()
    assert "caf\u00e9".encode() in stored  # stored as UTF-8
    assert info.fingerprint == "sha256:" + hashlib.sha256(stored).hexdigest()


@pytest.mark.parametrize("encoding", ["no-such-codec", "base64", ""])
def test_unknown_encoding_is_refused_up_front(repo: DatasetRepository, store: ArtifactStore, encoding: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        DatasetIntake(repo).begin_upload("t", encoding=encoding)
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
    intake = DatasetIntake(DatasetRepository(store), IntakeLimits(max_bytes=200_000))
    big = table(["a", "b"], ([i % 7, "x" * 50] for i in range(60_000)))  # ~3.4 MB
    packed = gzip.compress(big, compresslevel=9)
    assert len(packed) < 200_000
    written = 0
    with pytest.raises(ResourceExhausted) as caught:
        with intake.begin_upload("bomb") as up:
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
    intake = DatasetIntake(DatasetRepository(store), IntakeLimits(max_bytes=1000))
    data = table(["n", "x", "colour"], good_rows(200))
    assert len(data) > 1000
    up = intake.begin_upload("big")
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
    repo = DatasetRepository(store)
    with pytest.raises(ResourceExhausted, match="3 MB"):
        upload(repo, GOOD * (3 * MB // len(GOOD) + 1), limits=IntakeLimits(max_bytes=3 * MB))
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
    repo = DatasetRepository(store)
    assert upload(repo, table(["n", "x", "colour"], good_rows(3)), limits=IntakeLimits(min_rows=3)).row_count == 3


def test_single_column_is_refused(repo: DatasetRepository, store: ArtifactStore) -> None:
    err = refused(repo, store, table(["n"], [[i] for i in range(20)]))
    assert "at least two columns are needed" in err.message
    err = refused(repo, store, table(["a;b"], [[f"{i};{i}"] for i in range(20)]))
    assert "';'" in err.message


def test_too_many_columns_is_refused(store: ArtifactStore) -> None:
    repo = DatasetRepository(store)
    err = refused(repo, store, table(list("abcd"), [[1, 2, 3, 4]] * 12), limits=IntakeLimits(max_columns=3))
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
    _, preview, _ = repo.preview(info.id, rows=1)
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
    assert info.column("c").categories == ["b"]  # "NA" is a value here, in 4 rows: rare
    assert info.column("c").withheld_categories == 1
    _, preview, masked = repo.preview(info.id, rows=20)
    assert preview[0][1] is None and preview[0][2] == MASK and masked[0] == [False, False, True]
    assert preview[1][2] == "b"


# ---------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------


def test_leaving_the_block_without_commit_leaves_nothing(repo: DatasetRepository, store: ArtifactStore) -> None:
    with DatasetIntake(repo).begin_upload("t") as up:
        up.write(GOOD)
    assert leftovers(store) == []
    with pytest.raises(RuntimeError):
        with DatasetIntake(repo).begin_upload("t") as up:
            up.write(GOOD)
            raise RuntimeError("client went away")
    assert leftovers(store) == []
    up = DatasetIntake(repo).begin_upload("t")
    up.write(GOOD)
    up.abort()
    up.abort()
    assert leftovers(store) == []
    with pytest.raises(FailedPrecondition):
        up.write(GOOD)


def test_committed_upload_is_closed(repo: DatasetRepository, store: ArtifactStore) -> None:
    with DatasetIntake(repo).begin_upload("t") as up:
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


def test_inflate_never_returns_more_than_a_block() -> None:
    # The decompressor is driven with max_length; check our understanding of zlib.
    d = zlib.decompressobj(wbits=31)
    out = d.decompress(gzip.compress(b"0" * (5 * MB)), MB)
    assert len(out) == MB and d.unconsumed_tail
