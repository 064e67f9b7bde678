import pytest

from lakehouse.names import DATASET_NAME, InvalidName, suggest_name, validate_name
from lakehouse.store.layout import InvalidIngestId, validate_ingest_id


@pytest.mark.parametrize("name", ["a", "workers_500k", "x" * 63, "a1_b2"])
def test_valid_names_pass(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("Workers", "workers"),
        ("my-data set", "my_data_set"),
        ("500k", "d_500k"),
        ("_x", "x"),
        ("", "d"),
        ("x" * 64, "x" * 63),
        ("../../etc", "etc"),
        ("a;DROP TABLE b", "a_drop_table_b"),
        ("orders__rejects", "orders"),  # reserved: the view of a dataset's rejected rows
    ],
)
def test_invalid_names_are_refused_with_a_valid_suggestion(name: str, suggestion: str) -> None:
    with pytest.raises(InvalidName) as caught:
        validate_name(name)
    assert caught.value.suggestion == suggestion
    assert DATASET_NAME.match(suggest_name(name))
    assert suggestion in str(caught.value)


@pytest.mark.parametrize(
    "name",
    ["sales\n", "sales\r", "s\u0430les", "sal\u00e9s", "sales\x00", "\uff53ales", "sales ",
     "sale\u0663"],
    ids=["trailing-newline", "trailing-cr", "cyrillic-a", "accent", "nul", "fullwidth",
         "trailing-space", "arabic-digit"],
)  # fmt: skip
def test_attack_names_that_only_look_valid_are_refused_whole(name: str) -> None:
    """Attack: a name a `$`-anchored or Unicode-aware check would pass (`$` matches before
    a final newline, `\\w` and `\\d` take other scripts), reaching S3 keys, partitions and
    views. Names are matched whole, over ASCII only."""
    with pytest.raises(InvalidName):
        validate_name(name)


@pytest.mark.parametrize(
    "ingest_id",
    [
        "20261122T020428428745-c917ac03\n",
        "20261122T020428428745-c917ac0\u0663",
        "٢٠٢٦1122T020428428745-c917ac03",
        "20261122T020428428745-C917AC03",
        "../receipts/20261122T020428428745-c917ac03",
    ],
    ids=["trailing-newline", "arabic-digit-in-hex", "arabic-digits", "upper-hex", "path"],
)
def test_attack_ingest_ids_that_only_look_valid_are_refused_whole(ingest_id: str) -> None:
    with pytest.raises(InvalidIngestId):
        validate_ingest_id(ingest_id)
    assert validate_ingest_id("20261122T020428428745-c917ac03")
