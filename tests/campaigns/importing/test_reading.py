"""The CSV call-list reader, on real files (tests/data/csv, written as bytes) and on generated input.

No database: none of the conftest server fixtures are used.
"""

from __future__ import annotations

import codecs
import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns import phones
from campaigns.importing import CsvFileError, CsvLayout, ParsedRow, RowError, open_call_list, reading
from campaigns.importing import rows as csv_rows
from campaigns.importing.call_list import MAX_REPORTED_VALUE

DATA = Path(__file__).resolve().parents[2] / "data" / "csv"

Item = ParsedRow | RowError


def parse(name: str, **kwargs: Any) -> tuple[CsvLayout, list[Item]]:
    with (DATA / name).open("rb") as fh:
        layout, items = open_call_list(fh, **kwargs)
        return layout, list(items)


def parse_bytes(data: bytes, **kwargs: Any) -> tuple[CsvLayout, list[Item]]:
    layout, items = open_call_list(io.BytesIO(data), **kwargs)
    return layout, list(items)


def at(hour: int, minute: int) -> datetime:
    return datetime(2025, 3, 1, hour, minute, tzinfo=UTC)


def row(number: int, phone: str, **fields: Any) -> ParsedRow:
    return ParsedRow(
        row_number=number,
        phone=phone,
        scheduled_at=fields.get("scheduled_at"),
        timezone=fields.get("timezone"),
        state=fields.get("state"),
        text=fields.get("text"),
        metadata=fields.get("metadata", {}),
        variables=fields.get("variables", {}),
    )


# --- the same list in every encoding and dialect -----------------------------------------------------------

COLUMNS = ["phone", "timezone", "scheduled_at", "state", "first_name", "note", "metadata.crm_id", "text"]
SAME_ROWS = [
    row(
        2,
        "+12125550199",
        scheduled_at=at(14, 30),  # naive 09:30 read in America/New_York
        timezone="America/New_York",
        state="NY",  # written "ny"
        text="Hello Zoë",
        metadata={"crm_id": "c-1"},
        variables={"first_name": "Zoë", "note": "call after 5, ask for Zoë"},
    ),
    row(
        3,
        "+14155550123",
        scheduled_at=at(17, 30),  # explicit -08:00 wins; no timezone column value
        state="CA",
        metadata={"crm_id": "c-2"},
        variables={"first_name": "Ben", "note": ""},
    ),
    row(
        4,
        "+442079460958",
        timezone="Europe/London",
        metadata={"crm_id": "c-3"},
        variables={"first_name": "Chloé", "note": "prefers “mornings”"},
    ),
]


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter"),
    [
        ("utf8.csv", "utf-8", ","),
        ("utf8_bom.csv", "utf-8-sig", ","),
        ("utf16le_bom.csv", "utf-16-le", ","),
        ("utf16be_bom.csv", "utf-16-be", ","),
        ("semicolon.csv", "utf-8", ";"),
        ("tab.tsv", "utf-8", "\t"),
        ("crlf.csv", "utf-8", ","),
    ],
)
def test_encodings_and_dialects(name: str, encoding: str, delimiter: str) -> None:
    layout, items = parse(name)
    assert layout == CsvLayout(encoding=encoding, delimiter=delimiter, columns=COLUMNS, phone_column="phone")
    assert items == SAME_ROWS


def test_crlf_file_really_has_crlf() -> None:
    raw = (DATA / "crlf.csv").read_bytes()
    assert raw.count(b"\r\n") == 4 and raw.count(b"\n") == 4


# --- row contents and row errors ---------------------------------------------------------------------------

ROW_CASES: list[tuple[str, dict[str, Any], list[Item]]] = [
    (
        "quoted_newlines.csv",
        {},
        [
            row(
                2,
                "+12125550199",
                text="Hi Zoë,\r\nyour appointment is tomorrow.\r\nReply STOP to opt out.",
                variables={"note": 'She said "call me"'},
            ),
            row(3, "+14155550123", text="one line", variables={"note": "plain"}),
            row(4, "+16175550142", text="two\nlines (LF inside a CRLF file)", variables={"note": ""}),
        ],
    ),
    (
        "national_format.csv",
        {"default_region": "US"},
        [
            row(2, "+12125550199", variables={"city": "New York"}),
            row(3, "+12125550123", variables={"city": "New York"}),
            row(4, "+14155550142", variables={"city": "San Francisco"}),
            row(5, "+16175550100", variables={"city": "Boston"}),
            row(6, "+13125550111", variables={"city": "Chicago"}),
            row(7, "+442079460958", variables={"city": "London"}),
            RowError(8, "Phone", "020 7946 0958", phones.R_PHONE_TOO_LONG),  # a UK national number read as US
        ],
    ),
    (
        "national_format.csv",
        {"default_region": "GB"},
        [
            RowError(2, "Phone", "(212) 555-0199", phones.R_PHONE_INVALID),
            RowError(3, "Phone", "212-555-0123", phones.R_PHONE_INVALID),
            RowError(4, "Phone", "415.555.0142", phones.R_PHONE_INVALID),
            RowError(5, "Phone", "1 617 555 0100", phones.R_PHONE_TOO_LONG),
            RowError(6, "Phone", "3125550111", phones.R_PHONE_INVALID),
            row(7, "+442079460958", variables={"city": "London"}),
            row(8, "+442079460958", variables={"city": "London"}),  # "020 7946 0958" is national in GB
        ],
    ),
    (
        "national_format.csv",
        {"default_region": None},
        [
            RowError(2, "Phone", "(212) 555-0199", phones.R_PHONE_NO_REGION),
            RowError(3, "Phone", "212-555-0123", phones.R_PHONE_NO_REGION),
            RowError(4, "Phone", "415.555.0142", phones.R_PHONE_NO_REGION),
            RowError(5, "Phone", "1 617 555 0100", phones.R_PHONE_NO_REGION),
            RowError(6, "Phone", "3125550111", phones.R_PHONE_NO_REGION),
            row(7, "+442079460958", variables={"city": "London"}),
            RowError(8, "Phone", "020 7946 0958", phones.R_PHONE_NO_REGION),
        ],
    ),
    (
        "mixed_bad_rows.csv",
        {},
        [
            row(
                2,
                "+12125550199",
                scheduled_at=at(14, 30),
                timezone="America/New_York",
                state="NY",
                variables={"first_name": "Ann"},
            ),
            RowError(3, "phone", "+1 555 0100", phones.R_PHONE_LOCAL_ONLY),
            RowError(4, "phone", "+1 123 555 0199", phones.R_PHONE_INVALID),
            RowError(5, "phone", "hello", phones.R_PHONE_NOT_A_NUMBER),
            RowError(6, "phone", "+999 1234", phones.R_PHONE_BAD_COUNTRY),
            RowError(7, "timezone", "Mars/Olympus_Mons", csv_rows.R_TIMEZONE),
            RowError(8, "scheduled_at", "next tuesday", csv_rows.R_SCHEDULED_AT),
            RowError(9, "state", "XX", csv_rows.R_STATE),
            RowError(10, "", "+12125550103,,,,Ida,extra", "row has 6 fields, the header has 5"),
            # row 11 is a blank line: skipped, still counted
            RowError(12, "", "+12125550104,,", "row has 3 fields, the header has 5"),
            RowError(13, "phone", "12345", phones.R_PHONE_TOO_SHORT),
            RowError(13, "timezone", "Nowhere/Town", csv_rows.R_TIMEZONE),
            RowError(13, "scheduled_at", "2025-02-30T10:00", csv_rows.R_SCHEDULED_AT),
            RowError(13, "state", "Z9", csv_rows.R_STATE),
            # row 14 is ",,,,": an empty spreadsheet row, skipped
            RowError(15, "phone", "", phones.R_PHONE_MISSING),
            RowError(16, "phone", "+1 212 555 0199 ext. 12", phones.R_PHONE_EXTENSION),
            row(
                17,
                "+14155550123",
                scheduled_at=at(17, 30),
                timezone="America/Los_Angeles",  # written america/los_angeles
                state="CA",  # written ca
                variables={"first_name": "Mo"},
            ),
            RowError(18, "scheduled_at", "0001-01-01T00:00:00+01:00", csv_rows.R_SCHEDULED_AT_RANGE),
        ],
    ),
    ("header_only.csv", {}, []),
    ("leading_blank_lines.csv", {}, [row(4, "+12125550199", variables={"first_name": "Ann"})]),
    (
        "unnamed_columns.csv",
        {},
        [
            row(2, "+12125550199", variables={"first_name": "Ann"}),
            RowError(3, "column 4", "oops", csv_rows.R_UNNAMED),
        ],
    ),
]


@pytest.mark.parametrize(("name", "kwargs", "expected"), ROW_CASES, ids=[f"{c[0]}-{c[1]}" for c in ROW_CASES])
def test_rows(name: str, kwargs: dict[str, Any], expected: list[Item]) -> None:
    _layout, items = parse(name, **kwargs)
    assert items == expected


@pytest.mark.parametrize(
    ("name", "phone_column", "delimiter", "columns"),
    [
        ("alias_to.csv", "To", ",", ["To", "first_name"]),
        ("alias_phone_number.csv", "PHONE_NUMBER", ";", ["PHONE_NUMBER", "first_name"]),  # "  PHONE_NUMBER "
        ("alias_number.csv", "Number", "\t", ["first_name", "Number"]),
        ("alias_telnyx_end_user_target.csv", "telnyx_end_user_target", ",", ["telnyx_end_user_target", "first_name"]),
    ],
)
def test_phone_aliases(name: str, phone_column: str, delimiter: str, columns: list[str]) -> None:
    layout, items = parse(name)
    assert layout == CsvLayout(encoding="utf-8", delimiter=delimiter, columns=columns, phone_column=phone_column)
    assert items == [row(2, "+12125550199", variables={"first_name": "Ann"})]


def test_header_only_is_zero_rows() -> None:
    layout, items = parse("header_only.csv")
    assert layout.columns == ["phone", "first_name"]
    assert items == []


# --- file-level errors -------------------------------------------------------------------------------------

ALIASES = "phone, phone_number, to, number, telnyx_end_user_target"

FILE_ERRORS = [
    ("empty.csv", "the file is empty: a header row is required"),
    ("blank_lines_only.csv", "the file is empty: a header row is required"),
    (
        "no_phone_column.csv",
        f"no phone column: expected one of {ALIASES} (after normalization: trim, case, spaces/dashes/dots → _;"
        " found columns: 'name', 'email'); or map one, e.g. --map 'Mobile=phone'"
        ' or "mapping": {"Mobile": "phone"}',
    ),
    (
        "reserved_column.csv",
        "column 'telnyx_foo' is reserved: names starting with 'telnyx_' cannot be used as variables",
    ),
    (
        "duplicate_columns.csv",
        "duplicate column 'name': 'Name' (column 2) and 'name' (column 3); map one of them to another name or to '-'",
    ),
    (
        "two_phone_columns.csv",
        "more than one phone column: 'phone' (column 1) and 'to' (column 2); map the other one to a variable name"
        " or to '-'",
    ),
    ("binary.csv", "the file contains binary data (a NUL byte at offset 8); expected a CSV text file"),
    (
        "latin1.csv",
        "the file is not valid UTF-8 at byte offset 32: invalid continuation byte (bytes eb); save it as “CSV UTF-8”",
    ),
    (
        "utf16_no_bom.csv",
        "the file looks like UTF-16 without a byte-order mark; save it as UTF-8, or UTF-16 with BOM",
    ),
]


@pytest.mark.parametrize(("name", "message"), FILE_ERRORS, ids=[c[0] for c in FILE_ERRORS])
def test_file_errors_are_raised_before_any_row(name: str, message: str) -> None:
    with (DATA / name).open("rb") as fh, pytest.raises(CsvFileError) as caught:
        open_call_list(fh)
    assert str(caught.value) == message


def test_binary_file_really_is_a_png() -> None:
    assert (DATA / "binary.csv").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_utf32_is_refused() -> None:
    with pytest.raises(CsvFileError, match="UTF-32"):
        parse_bytes("phone\n+12125550199\n".encode("utf-32"))


def test_metadata_column_without_key() -> None:
    with pytest.raises(CsvFileError, match=r"column 'metadata\.' has no key"):
        parse_bytes(b"phone,metadata.\n+12125550199,x\n")


def test_reserved_names_are_case_insensitive_and_the_phone_alias_is_not_reserved() -> None:
    with pytest.raises(CsvFileError, match="'TELNYX_agent_target' is reserved"):
        parse_bytes(b"phone,TELNYX_agent_target\n+12125550199,x\n")
    _layout, items = parse_bytes(b"Telnyx_End_User_Target\n+12125550199\n")
    assert items == [row(2, "+12125550199")]


def test_unknown_default_region_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="unknown default region"):
        parse_bytes(b"phone\n+12125550199\n", default_region="XX")


# --- problems found while streaming ------------------------------------------------------------------------


class OneWay(io.RawIOBase):
    """A non-seekable upload that counts what was read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = memoryview(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        n = min(len(target), len(self._data) - self.consumed)
        target[:n] = self._data[self.consumed : self.consumed + n]
        self.consumed += n
        return n


def big_file(rows: int, tail: bytes = b"") -> bytes:
    body = b"".join(b"+1212555%04d,name %d\n" % (i % 10_000, i) for i in range(rows))
    return b"phone,first_name\n" + body + tail


def collect_until_error(items: Any) -> tuple[int, CsvFileError | None]:
    count = 0
    try:
        for _ in items:
            count += 1
    except CsvFileError as exc:
        return count, exc
    return count, None


def test_streaming_reads_a_bounded_prefix_then_streams() -> None:
    data = big_file(300_000)  # ~7 MB
    source = OneWay(data)
    layout, items = open_call_list(source)  # type: ignore[arg-type]
    assert layout.phone_column == "phone"
    assert source.consumed <= reading.PROBE_BYTES
    first = [next(items) for _ in range(10)]
    assert [r.row_number for r in first] == list(range(2, 12))
    assert source.consumed <= 256 * 1024
    assert sum(1 for _ in items) == 300_000 - 10
    assert source.consumed == len(data)


def test_nul_byte_after_the_probe_stops_the_iterator() -> None:
    data = big_file(10_000, b"+12125550199,bad\x00name\n+12125550199,after\n")
    assert len(data) > reading.PROBE_BYTES
    _layout, items = open_call_list(io.BytesIO(data))
    count, error = collect_until_error(items)
    assert count == 10_000
    assert str(error) == "the file contains binary data (a NUL byte in row 10002); expected a CSV text file"


def test_undecodable_bytes_after_the_probe_stop_the_iterator() -> None:
    data = big_file(10_000, "+12125550199,Zoë\n".encode("latin-1"))
    _layout, items = open_call_list(io.BytesIO(data))
    count, error = collect_until_error(items)
    assert count <= 10_000
    assert error is not None
    assert str(error).startswith("the file is not valid UTF-8 in or after row ")


def test_truncated_utf16_is_a_file_error() -> None:
    data = "phone\n+12125550199\n".encode("utf-16") + b"\x00"  # odd number of bytes
    with pytest.raises(CsvFileError) as caught:
        open_call_list(io.BytesIO(data))
    assert (
        str(caught.value) == "the file is not valid UTF-16 (little-endian) at byte offset 40: truncated data (bytes 00)"
    )

    data = big_file(10_000).decode().encode("utf-16") + b"\x00"
    _layout, items = open_call_list(io.BytesIO(data))
    count, error = collect_until_error(items)
    assert count == 10_000
    assert str(error) == "the file is not valid UTF-16 (little-endian) in or after row 10002: truncated data (bytes 00)"


def test_size_limit_on_a_seekable_upload_is_checked_up_front() -> None:
    with pytest.raises(CsvFileError, match="larger than the limit of 1,000 bytes"):
        open_call_list(io.BytesIO(big_file(100)), max_bytes=1000)


def test_size_limit_on_a_stream_stops_the_iterator() -> None:
    data = big_file(20_000)
    limit = 200_000
    _layout, items = open_call_list(OneWay(data), max_bytes=limit)  # type: ignore[arg-type]
    count, error = collect_until_error(items)
    assert str(error) == "the file is larger than the limit of 200,000 bytes"
    assert 0 < count < 20_000


def test_size_limit_smaller_than_the_probe() -> None:
    with pytest.raises(CsvFileError, match="larger than the limit of 100 bytes"):
        open_call_list(OneWay(big_file(100)), max_bytes=100)  # type: ignore[arg-type]


def test_a_huge_line_is_a_file_error_not_a_memory_problem() -> None:
    data = b"phone,note\n+12125550199,ok\n+12125550199," + b"x" * (csv_rows.MAX_LINE_CHARS + 10) + b"\n"
    _layout, items = open_call_list(io.BytesIO(data))
    count, error = collect_until_error(items)
    assert count == 1
    assert str(error) == f"row 3 has a line longer than {csv_rows.MAX_LINE_CHARS:,} characters"


def test_an_unbalanced_quote_is_a_file_error() -> None:
    line = b"+12125550199,fine\n"
    data = b"phone,note\n" + line + b'+12125550199,"never closed\n' + line * 20_000
    _layout, items = open_call_list(io.BytesIO(data))
    count, error = collect_until_error(items)
    assert count == 1
    assert error is not None
    assert str(error).startswith("row 3 cannot be read as CSV: field larger than field limit")


@pytest.mark.parametrize("tail", [b"", b"\n", b"+12125550103,Doe\n"])
def test_a_quote_open_at_the_end_of_the_file_is_a_file_error(tail: bytes) -> None:
    """Read leniently, an unclosed quote swallowed every following row into one field: the rows were lost and
    the import reported none rejected."""
    data = b'phone,name\n+12125550100,Ana\n+12125550101,"Smith\n+12125550102,Jones\n' + tail
    _layout, items = open_call_list(io.BytesIO(data))
    count, error = collect_until_error(items)
    assert count == 1
    assert str(error) == (
        "row 3 opens a quoted field that is never closed: it runs to the end of the file (an unbalanced quote?)"
    )


def test_a_quoted_field_over_several_lines_is_still_one_value() -> None:
    data = b'phone,note\n+12125550100,"line one\nline two"\n+12125550101,last'
    _layout, items = parse_bytes(data)
    assert [type(item) for item in items] == [ParsedRow, ParsedRow]
    first = items[0]
    assert isinstance(first, ParsedRow) and first.variables == {"note": "line one\nline two"}


def test_header_longer_than_the_probe() -> None:
    names = [f"variable_{i:06d}" for i in range(6000)]  # ~100 KB header
    data = (",".join(["phone", *names]) + "\n+12125550199" + ",x" * len(names) + "\n").encode()
    assert len(data) > reading.PROBE_BYTES
    layout, items = parse_bytes(data)
    assert layout.columns == ["phone", *names]
    assert len(items) == 1 and isinstance(items[0], ParsedRow)


def test_no_line_break_in_the_first_megabyte() -> None:
    with pytest.raises(CsvFileError) as caught:
        open_call_list(io.BytesIO(b"phone" + b",x" * reading.MAX_HEADER_BYTES))
    assert str(caught.value) == (
        "no complete header row in the first 1,048,576 bytes (a missing line break or an unbalanced quote?)"
    )
    with pytest.raises(CsvFileError) as caught:
        open_call_list(io.BytesIO(b'phone,"' + b"x" * 200_000 + b'"\n'))
    assert str(caught.value) == "the header row cannot be read as CSV: field larger than field limit (131072)"


# --- details -----------------------------------------------------------------------------------------------


def test_old_mac_line_endings_and_spaces_after_delimiters() -> None:
    layout, items = parse_bytes(b'phone, first_name, note\r+12125550199, Ann, "a, b"\r')
    assert layout.columns == ["phone", "first_name", "note"]
    assert items == [row(2, "+12125550199", variables={"first_name": "Ann", "note": "a, b"})]


def test_delimiter_is_the_one_that_finds_the_phone_column() -> None:
    # "phone,name;x" splits on ";" into ["phone,name", "x"] (no phone column), on "," into ["phone", "name;x"].
    layout, items = parse_bytes(b"phone,name;x\n+12125550199,a;b\n")
    assert layout.delimiter == ","
    assert items == [row(2, "+12125550199", variables={"name;x": "a;b"})]


def test_values_are_cut_in_reports() -> None:
    long_value = "x" * 1000
    _layout, items = parse_bytes(f"phone\n{long_value}\n".encode())
    assert items == [RowError(2, "phone", "x" * (MAX_REPORTED_VALUE - 1) + "…", phones.R_PHONE_TOO_LONG)]


def test_scheduled_at_forms() -> None:
    data = (
        b"phone,scheduled_at,timezone\n"
        b"+12125550199,2025-03-01T09:30:00Z,America/Chicago\n"  # aware: the zone does not apply
        b"+12125550199,2025-03-01 09:30,America/Chicago\n"  # naive: read in the row's zone
        b"+12125550199,2025-03-01T09:30,\n"  # naive, no zone: UTC
        b"+12125550199,,America/Chicago\n"  # empty: campaign start
    )
    _layout, items = parse_bytes(data)
    assert [r.scheduled_at for r in items if isinstance(r, ParsedRow)] == [at(9, 30), at(15, 30), at(9, 30), None]


def test_text_and_metadata() -> None:
    data = (
        b"phone,Name,TEXT,Metadata.Source, metadata.crm id \n+12125550199,Ann,  Hi {{name}} ,web,7\n"
        b"+14155550123,,,,\n+13125550100,,Hi {{name}},,\n"
    )
    _layout, items = parse_bytes(data)
    assert items == [
        row(2, "+12125550199", text="Hi Ann", metadata={"Source": "web", "crm id": "7"}, variables={"name": "Ann"}),
        row(3, "+14155550123", metadata={"Source": "", "crm id": ""}, variables={"name": ""}),
        RowError(4, "Name", "", "empty value for 'name', which the text uses (or give a default in the template)"),
    ]


def test_a_spaced_header_names_the_phone_column_after_normalization() -> None:
    layout, items = parse("phone_number_with_space.csv")
    assert layout.phone_column == "Phone Number"
    assert layout.mapping == (("Name", "name"), ("Phone Number", "phone"))
    assert items[0] == row(2, "+12125550199", variables={"name": "Ann"})


# --- properties --------------------------------------------------------------------------------------------

BOMS = [b"", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE]


def drain(data: bytes, **kwargs: Any) -> list[Item] | CsvFileError:
    """open + iterate; the only exception allowed out is CsvFileError."""
    try:
        _layout, items = open_call_list(io.BytesIO(data), **kwargs)
        out = list(items)
    except CsvFileError as exc:
        assert str(exc)
        return exc
    for item in out:
        assert isinstance(item, ParsedRow | RowError)
    return out


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=2000), st.tuples(st.sampled_from(BOMS), st.binary(max_size=2000)).map(b"".join)))
def test_arbitrary_bytes_give_a_report_or_one_file_error(data: bytes) -> None:
    drain(data)


HEADER_NAMES = [
    "phone", "Phone ", "to", "number", "phone_number", "telnyx_end_user_target", "timezone", "scheduled_at",
    "state", "text", "metadata.k", "first_name", "telnyx_x", "", "name",
]  # fmt: skip
CELL_VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["+12125550199", "(212) 555-0199", "+1 555 0100", "America/New_York", "2025-03-01T09:00", "NY", '"', ""]
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.lists(st.sampled_from(HEADER_NAMES), min_size=1, max_size=6),
    rows=st.lists(st.lists(CELL_VALUES, max_size=7), max_size=8),
    delimiter=st.sampled_from([",", ";", "\t", "|", " "]),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be"]),
    quote=st.booleans(),
)
def test_arbitrary_text_gives_a_report_or_one_file_error(
    header: list[str], rows: list[list[str]], delimiter: str, newline: str, encoding: str, quote: bool
) -> None:
    lines = [header, *rows]
    if quote:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(lines)
        text = buffer.getvalue()
    else:
        text = "".join(delimiter.join(line) + newline for line in lines)
    data = codecs.BOM_UTF16_BE + text.encode("utf-16-be") if encoding == "utf-16-be" else text.encode(encoding)
    drain(data)


VALID_PHONES = [
    "+12125550199", "(415) 555-0123", "+442079460958", "617.555.0142", "1 312 555 0111", "+33 1 42 68 53 00",
]  # fmt: skip
INVALID_PHONES = ["+1 555 0100", "hello", "+1 123 555 0199", "+999 1234", "12345"]
CANONICAL_ZONE: dict[str, str | None] = {"": None, "europe/paris": "Europe/Paris"}
SAFE_TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=30)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.booleans(),
            st.integers(min_value=0, max_value=100),
            SAFE_TEXT,
            SAFE_TEXT,
            st.sampled_from(["", "America/New_York", "europe/paris", "UTC"]),
        ),
        max_size=40,
    ),
    delimiter=st.sampled_from([",", ";", "\t"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
    newline=st.sampled_from(["\n", "\r\n"]),
)
def test_accepted_rows_equal_valid_rows(
    rows: list[tuple[bool, int, str, str, str]], delimiter: str, encoding: str, newline: str
) -> None:
    buffer = io.StringIO()
    # csv.writer quotes only the characters of its own line terminator: with "\n" a bare "\r" in a value
    # would really be a line break, so quote everything then.
    quoting: Literal[0, 1] = csv.QUOTE_MINIMAL if newline == "\r\n" else csv.QUOTE_ALL
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline, quoting=quoting)
    writer.writerow(["first_name", "phone", "note", "timezone"])
    expected_rows: dict[int, tuple[str, str, str | None]] = {}
    expected_errors: set[int] = set()
    for number, (valid, pick, name, note, zone) in enumerate(rows, start=2):
        choices = VALID_PHONES if valid else INVALID_PHONES
        writer.writerow([name, choices[pick % len(choices)], note, zone])
        if valid:
            expected_rows[number] = (name.strip(), note.strip(), CANONICAL_ZONE.get(zone, zone))
        else:
            expected_errors.add(number)
    result = drain(buffer.getvalue().encode(encoding), default_region="US")
    assert not isinstance(result, CsvFileError), result
    parsed = [item for item in result if isinstance(item, ParsedRow)]
    errors = [item for item in result if isinstance(item, RowError)]
    assert len(parsed) == len(expected_rows)
    assert {r.row_number: (r.variables["first_name"], r.variables["note"], r.timezone) for r in parsed} == expected_rows
    assert {e.row_number for e in errors} == expected_errors
    assert all(e.column == "phone" for e in errors)
