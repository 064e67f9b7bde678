import pytest

from lakehouse.formats.csv.schema import infer_schema
from lakehouse.formats.csv.text import NotCsv
from lakehouse.formats.csv.types import Column, value_kind


def types(data: bytes, complete: bool = True) -> dict[str, str]:
    return {c.name: c.type for c in infer_schema(data, complete=complete).columns}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("", None),
        ("true", "boolean"),
        ("FALSE", "boolean"),
        ("42", "integer"),
        ("-7", "integer"),
        ("007", "text"),  # leading zeros would be lost as a number
        ("99999999999999999999", "decimal"),  # beyond BIGINT: a DECIMAL keeps it
        ("2.5", "decimal"),
        ("1e3", "decimal"),
        ("2024-02-29", "date"),
        ("2023-02-29", "text"),  # no such day
        ("2024-01-02 03:04:05", "timestamp"),
        ("2024-01-02T03:04:05.123456", "timestamp"),
        ("N/A", "text"),
    ],
)
def test_value_kind(value: str, kind: str | None) -> None:
    assert value_kind(value) == kind


def test_each_type_is_inferred_from_the_sample() -> None:
    data = (
        b"id,name,rate,ok,day,at\n"
        b"1,Ann,2.5,true,2024-01-02,2024-01-02 03:04:05\n"
        b"2,Bo,3,false,2024-02-03,2024-02-03 04:05:06\n"
    )
    assert types(data) == {
        "id": "BIGINT",
        "name": "VARCHAR",
        "rate": "DECIMAL(18,1)",
        "ok": "BOOLEAN",
        "day": "DATE",
        "at": "TIMESTAMP",
    }


def test_an_ambiguous_column_becomes_a_string_and_says_why() -> None:
    schema = infer_schema(b"qty,zip\n1,12345\n2,00501\nN/A,60601\n", complete=True)
    qty, zip_code = schema.columns
    assert qty.type == "VARCHAR"
    assert qty.reason == "string: value 'N/A' on line 4 is not an integer"
    assert zip_code.type == "VARCHAR"
    assert zip_code.reason == "string: value '00501' on line 3 is not an integer"


def test_empty_values_are_nulls_and_do_not_decide_the_type() -> None:
    assert types(b"a,b\n1,\n,\n3,\n") == {"a": "BIGINT", "b": "VARCHAR"}


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_detected(delimiter: str) -> None:
    data = delimiter.join(["a", "b", "c"]) + "\n" + delimiter.join(["1", "x", "2.5"]) + "\n"
    schema = infer_schema(data.encode(), complete=True)
    assert schema.delimiter == delimiter
    assert [c.type for c in schema.columns] == ["BIGINT", "VARCHAR", "DECIMAL(18,1)"]


def test_an_ambiguous_file_splits_into_the_most_columns() -> None:
    """`0|` then `|` is one comma-separated column, or two pipe-separated ones: the
    reading with the most columns, the same on every line, wins (and a header `|` alone
    is two blank names, refused, rather than a column named "|")."""
    schema = infer_schema(b"0|\n|\n", complete=True)
    assert (schema.delimiter, len(schema.columns)) == ("|", 2)
    with pytest.raises(NotCsv, match="no column names"):
        infer_schema(b"|\n", complete=True)


def test_quoted_fields_with_delimiters_quotes_and_newlines() -> None:
    data = b'id,note\n1,"a, b"\n2,"say ""hi"""\n3,"two\nlines"\n4,plain\n'
    assert types(data) == {"id": "BIGINT", "note": "VARCHAR"}


def test_utf8_bom_and_crlf_line_ends() -> None:
    assert types(b"\xef\xbb\xbfid,name\r\n1,Zo\xc3\xab\r\n2,Li\r\n") == {
        "id": "BIGINT",
        "name": "VARCHAR",
    }


def test_header_only_file_is_a_valid_empty_schema() -> None:
    assert types(b"a,b\n") == {"a": "VARCHAR", "b": "VARCHAR"}


def test_blank_and_duplicate_header_names_are_made_unique_and_reported() -> None:
    schema = infer_schema(b"id,,id,name\n1,2,3,x\n", complete=True)
    assert [c.name for c in schema.columns] == ["id", "column_2", "id_2", "name"]
    assert schema.renamed == {"column_2": "<blank>", "id_2": "id"}


def test_a_cut_sample_ignores_its_last_partial_line() -> None:
    # The sample ends inside a multi-byte character of a cut line: that line is dropped.
    data = "id,name\n1,Ann\n2,Zoë".encode()[:-1]
    assert types(data, complete=False) == {"id": "BIGINT", "name": "VARCHAR"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not text"),
        (b"id,name\n1,\xff\xfe\n", "not UTF-8"),
    ],
)
def test_input_that_is_not_csv_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(NotCsv, match=message):
        infer_schema(data, complete=True)


def test_fingerprint_changes_with_names_and_types_only() -> None:
    base = infer_schema(b"a,b\n1,x\n", complete=True).fingerprint
    assert infer_schema(b"a,b\n2,y\n", complete=True).fingerprint == base
    assert infer_schema(b"a,c\n1,x\n", complete=True).fingerprint != base
    assert infer_schema(b"a,b\nx,x\n", complete=True).fingerprint != base


# -- hostile and awkward input: refused with what to do, or read exactly as DuckDB will ----


def test_a_field_longer_than_the_csv_modules_limit_is_read() -> None:
    # Python's csv module refuses fields over 128 KiB unless told otherwise.
    schema = infer_schema(b"id,blob\n1," + b"x" * 200_000 + b"\n", complete=True)
    assert [(c.name, c.type) for c in schema.columns] == [("id", "BIGINT"), ("blob", "VARCHAR")]


def test_names_that_differ_only_in_case_are_made_unique_and_reported() -> None:
    # DuckDB's identifiers ignore case: `id` and `ID` would be the same column.
    schema = infer_schema(b"id,ID,Id,name\n1,2,3,x\n", complete=True)
    assert [c.name for c in schema.columns] == ["id", "ID_2", "Id_3", "name"]
    assert schema.renamed == {"ID_2": "ID", "Id_3": "Id"}


@pytest.mark.parametrize("data", [b" \nid\n1\n", b",,\n1,2,3\n", b"|\n"])
def test_a_first_line_without_column_names_is_refused(data: bytes) -> None:
    with pytest.raises(NotCsv, match="line 1 has no column names.*put the header line first"):
        infer_schema(data, complete=True)


@pytest.mark.parametrize("data", [b"\nid,name\n1,a\n", b"\r\nid,name\r\n1,a\r\n"])
def test_blank_lines_before_the_header_are_skipped_and_reported(data: bytes) -> None:
    schema = infer_schema(data, complete=True)
    assert [c.name for c in schema.columns] == ["id", "name"]
    assert schema.skip == 1
    assert "lines 1-1 are a preamble" in schema.why["skip"]


def test_a_line_break_inside_a_column_name_is_refused() -> None:
    # DuckDB skips the header as one physical line: the rest of it would become a row.
    with pytest.raises(NotCsv, match="holds a line break: put every column name"):
        infer_schema(b'"first\nname",id\nAnn,1\n', complete=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a,b\n1,x\r\n2,y\n", "line 2 ends with CRLF, the header with LF"),
        (b"a,b\r\n1,x\n", "line 2 ends with LF, the header with CRLF"),
        (b"a,b\n1,x\ry\n", "line 2 ends with CR, the header with LF"),
    ],
    ids=["crlf-in-lf", "lf-in-crlf", "bare-cr-unquoted"],
)
def test_mixed_line_ends_are_refused(data: bytes, message: str) -> None:
    # DuckDB's reader (strict mode) fails the whole file on them.
    with pytest.raises(NotCsv, match=f"{message}: use one kind of line end"):
        infer_schema(data, complete=True)


def test_line_breaks_inside_quoted_values_and_cr_line_ends_are_fine() -> None:
    data = b'id,note\r1,"a\r\nb"\r2,"c\nd"\r3,"e\rf"\r'
    assert types(data) == {"id": "BIGINT", "note": "VARCHAR"}


def test_a_header_line_longer_than_the_sample_is_refused() -> None:
    with pytest.raises(NotCsv, match="no line end in the first 1000 bytes"):
        infer_schema(b"a" * 1000, complete=False)


def test_a_cut_sample_leaves_out_a_row_cut_inside_quotes() -> None:
    # The sample ends inside the quoted value of row 3: its partial value is not counted.
    data = b'id,note\n1,"x"\n"2\n'
    assert types(data, complete=False) == {"id": "BIGINT", "note": "VARCHAR"}


@pytest.mark.parametrize("digits", ["١٢٣", "１２", "𝟙", "٣.٥"])
def test_only_ascii_digits_make_numbers(digits: str) -> None:
    # Python's int() and float() read these; DuckDB does not, so every row would be rejected.
    assert value_kind(digits) == "text"
    assert types(f"n\n{digits}\n".encode()) == {"n": "VARCHAR"}


@pytest.mark.parametrize(
    ("values", "type_", "reason"),
    [
        (["1", "-2"], "BIGINT", "bigint: every sampled value fits, e.g. '1'"),
        (["2.5", "3"], "DECIMAL(18,1)", "at most 1 decimals and 18 digits, e.g. '2.5' on line 2"),
        (["24386.67", "3.5"], "DECIMAL(18,2)", "DECIMAL(18,2) keeps them exactly"),  # money
        (["0.1", "1e3"], "DOUBLE", "double: value '1e3' on line 3 is in exponent notation"),
        (["1.5", "9007199254740993"], "DECIMAL(18,1)", "e.g. '9007199254740993' on line 3"),
        (["99999999999999999999", "-1"], "DECIMAL(38,0)", "e.g. '99999999999999999999'"),
        (["0.12345678901234567", "1"], "DECIMAL(18,17)", "at most 17 decimals and 18 digits"),
        (["1234567890123456789.5"], "DECIMAL(38,1)", "DECIMAL(38,1) keeps them exactly"),
        (["1" * 39], "VARCHAR", "more digits than a DECIMAL(38) holds"),
        (["1e400"], "VARCHAR", "would not hold value '1e400' on line 2 exactly as written"),
        (["1e-400"], "VARCHAR", "would not hold value '1e-400' on line 2 exactly as written"),
        (["1e3", "12345678901234567"], "VARCHAR", "value '12345678901234567' on line 3"),
    ],
)
def test_numbers_get_a_type_that_keeps_every_digit(
    values: list[str], type_: str, reason: str
) -> None:
    [column] = infer_schema(("n\n" + "\n".join(values) + "\n").encode(), complete=True).columns
    assert column.type == type_
    assert reason in column.reason


@pytest.mark.parametrize(
    ("contract_type", "values", "type_"),
    [
        ("DOUBLE", ["1", "2"], "DOUBLE"),
        ("DOUBLE", ["9007199254740993"], "BIGINT"),  # a DOUBLE would round it: a 409
        ("DECIMAL(38,2)", ["1.5", "7"], "DECIMAL(38,2)"),
        ("DECIMAL(38,2)", ["1.234"], "DECIMAL(18,3)"),  # more decimals than the dataset keeps
        ("DECIMAL(38,2)", ["1e3"], "DOUBLE"),
    ],
)
def test_an_upload_takes_the_datasets_numeric_type_only_when_exact(
    contract_type: str, values: list[str], type_: str
) -> None:
    data = ("n\n" + "\n".join(values) + "\n").encode()
    [column] = infer_schema(data, complete=True, contract=[Column("n", contract_type, "")]).columns
    assert column.type == type_
