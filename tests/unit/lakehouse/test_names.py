import pytest

from lakehouse.names import DATASET_NAME, InvalidName, suggest_name, validate_name


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
