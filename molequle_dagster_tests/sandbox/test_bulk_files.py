"""Bulk file rendering: Marketo's CSV dialect, checked cell by cell and byte for byte against real exports."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from molequle_dagster.sandbox.bulk_files import render_cells, write_export
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES

FIXTURES = MARKETO_FIXTURES
TS = pa.timestamp("s", tz="UTC")


def _render(values: pa.Array, delimiter: str = ",", booleans: str = "true_false") -> list[str]:
    return render_cells(values, delimiter, booleans).to_pylist()  # type: ignore[arg-type]


def test_text_is_quoted_only_when_it_holds_a_delimiter_quote_or_line_break() -> None:
    values = pa.array(["plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", "semi;colon", None, ""])
    assert _render(values) == [
        "plain",
        '"a,b"',
        '"say ""hi"""',
        '"two\nlines"',
        '"cr\rhere"',
        "semi;colon",
        "null",
        "",
    ]
    assert _render(values, ";")[5] == '"semi;colon"'
    assert _render(values, ";")[1] == "a,b"
    assert _render(pa.array(["tab\there"]), "\t") == ['"tab\there"']


def test_the_text_null_is_quoted_unless_the_sandbox_is_set_to_write_it_bare() -> None:
    """BulkSettings.null_text [UNCONFIRMED]: bare, the text "null" is the same bytes as an empty value."""
    values = pa.array(["null", None, "Null", "nullable"])
    assert _render(values) == ['"null"', "null", "Null", "nullable"]
    assert render_cells(values, ",", quote_null=False).to_pylist() == ["null", "null", "Null", "nullable"]


def test_timestamps_booleans_numbers_and_nulls() -> None:
    when = datetime(2017, 9, 8, 16, 38, 14, tzinfo=UTC)
    assert _render(pa.array([when, None], TS)) == ["2017-09-08T16:38:14Z", "null"]
    assert _render(pa.array([True, False, None])) == ["true", "false", "null"]
    assert _render(pa.array([True, False, None]), booleans="zero_one") == ["1", "0", "null"]
    assert _render(pa.array([783957693, None, -5], pa.int64())) == ["783957693", "null", "-5"]
    assert _render(pa.nulls(2)) == ["null", "null"]


def test_write_export_reports_rows_size_and_the_sha256_of_the_whole_file(tmp_path: Path) -> None:
    batches = [
        pa.record_batch({"id": pa.array([1, 2]), "name": pa.array(["x", "y,z"])}),
        pa.record_batch({"id": pa.array([], pa.int64()), "name": pa.array([], pa.string())}),
        pa.record_batch({"id": pa.array([3]), "name": pa.array([None], pa.string())}),
    ]
    path = tmp_path / "out.csv"
    facts = write_export(path, ["Id", "Full, Name"], batches, ",")
    data = path.read_bytes()
    assert data == b'Id,"Full, Name"\n1,x\n2,"y,z"\n3,null\n'
    assert facts.number_of_records == 3
    assert facts.file_size == len(data)
    assert facts.file_checksum == "sha256:" + hashlib.sha256(data).hexdigest()


def test_an_empty_export_is_just_the_header(tmp_path: Path) -> None:
    facts = write_export(tmp_path / "e.csv", ["a", "b"], iter(()), "\t")
    assert (tmp_path / "e.csv").read_bytes() == b"a\tb\n"
    assert facts.number_of_records == 0


# --- contract: re-render real Marketo exports from typed Arrow columns and compare byte for byte --------
def _columns(path: Path) -> tuple[list[str], dict[str, list[str | None]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    columns = {name: [None if row[i] == "null" else row[i] for row in body] for i, name in enumerate(header)}
    return header, columns


def _typed(values: list[str | None], kind: str) -> pa.Array:
    if kind == "int":
        return pa.array([None if v is None else int(v) for v in values], pa.int64())
    if kind == "ts":
        return pa.array([None if v is None else datetime.fromisoformat(v) for v in values], TS)
    if kind == "bool01":
        return pa.array([None if v is None else v == "1" for v in values], pa.bool_())
    if kind == "bool":
        return pa.array([None if v is None else v == "true" for v in values], pa.bool_())
    return pa.array(values, pa.string())


@pytest.mark.parametrize(
    ("fixture", "types", "booleans"),
    [
        (
            "bulk-activities/real_embulk__activity_extract1.csv",
            {
                "marketoGUID": "int",
                "leadId": "int",
                "activityDate": "ts",
                "activityTypeId": "int",
                "campaignId": "int",
                "primaryAttributeValueId": "int",
            },
            "true_false",
        ),
        (
            "bulk-activities/real_embulk__activity_extract2.csv",
            {
                "marketoGUID": "int",
                "leadId": "int",
                "activityDate": "ts",
                "activityTypeId": "int",
                "campaignId": "int",
                "primaryAttributeValueId": "int",
            },
            "true_false",
        ),
        (
            "bulk-activities/doc_bulk-activity-extract__retrieving-your-data__file__csv-export-file.csv",
            {
                "marketoGUID": "int",
                "leadId": "int",
                "activityDate": "ts",
                "activityTypeId": "int",
                "campaignId": "int",
                "primaryAttributeValueId": "int",
            },
            "true_false",
        ),
        (
            "bulk-program-members/real_embulk__program_members_extract.csv",
            {
                "isExhausted": "bool01",
                "acquiredBy": "bool01",
                "reachedSuccess": "bool01",
                "programId": "int",
                "leadId": "int",
                "membershipDate": "ts",
                "createdAt": "ts",
                "updatedAt": "ts",
            },
            "zero_one",
        ),
        (
            "bulk-program-members/doc_bulk-program-member-extract__retrieving-your-data__file__csv-export-file.csv",
            {"Member Date": "ts", "Lead Id": "int", "Success": "bool"},
            "true_false",
        ),
        (
            "bulk-leads/real_embulk__lead_extract1.csv",
            {"id": "int", "createdAt": "ts", "updatedAt": "ts"},
            "true_false",
        ),
        (
            "bulk-leads/real_embulk__leads_extract2.csv",
            {"id": "int", "createdAt": "ts", "updatedAt": "ts"},
            "true_false",
        ),
    ],
)
def test_rerendering_real_exports_reproduces_them_byte_for_byte(
    tmp_path: Path, fixture: str, types: dict[str, str], booleans: str
) -> None:
    source = FIXTURES / fixture
    header, columns = _columns(source)
    arrays = [_typed(columns[name], types.get(name, "text")) for name in header]
    batch = pa.RecordBatch.from_arrays(arrays, names=[f"c{i}" for i in range(len(header))])
    styles = [booleans] * len(header)
    out = tmp_path / "again.csv"
    write_export(out, header, [batch], ",", styles)  # type: ignore[arg-type]
    expected = source.read_bytes()
    if not expected.endswith(b"\n"):
        expected += b"\n"  # some fixtures were saved without the final newline
    assert out.read_bytes() == expected


def test_a_json_attributes_cell_is_one_quoted_cell_that_csv_readers_split_correctly(tmp_path: Path) -> None:
    attributes = '{"Webpage URL":"https://x/?a=1,b","Flag":true,"Note":"line\\nbreak"}'
    batch = pa.record_batch({"guid": pa.array([7]), "attributes": pa.array([attributes])})
    write_export(tmp_path / "a.csv", ["marketoGUID", "attributes"], [batch], ",")
    rows = list(csv.reader(io.StringIO((tmp_path / "a.csv").read_text())))
    assert rows == [["marketoGUID", "attributes"], ["7", attributes]]
