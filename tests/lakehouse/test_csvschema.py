import pytest

from lakehouse.csvschema import NotCsv, infer_schema, value_kind


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
        "rate": "DOUBLE",
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
    assert [c.type for c in schema.columns] == ["BIGINT", "VARCHAR", "DOUBLE"]


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
