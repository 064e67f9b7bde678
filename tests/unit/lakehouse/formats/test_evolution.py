"""What each `evolve=` lets an append change in its dataset's columns."""

from lakehouse.formats.csv.types import Column
from lakehouse.formats.evolution import evolved, is_widening


def test_what_each_evolve_allows() -> None:
    id_, name = Column("id", "BIGINT", ""), Column("name", "VARCHAR", "")
    money, wide = Column("m", "DECIMAL(18,2)", ""), Column("m", "DECIMAL(38,2)", "")
    email = Column("email", "VARCHAR", "")
    assert evolved([id_, name], [id_, name, email], "strict") is None
    assert evolved([id_, name], [id_, name, email], "add_columns") == [id_, name, email]
    assert evolved([id_, name], [id_], "add_columns") == [id_, name]  # name: NULL
    assert evolved([id_, money], [id_, wide], "add_columns") is None
    assert [c.type for c in evolved([id_, money], [id_, wide], "widen") or []] == [
        "BIGINT",
        "DECIMAL(38,2)",
    ]
    assert evolved([id_, wide], [id_, money], "widen") is None  # never narrower
    assert evolved([id_, name], [id_, Column("name", "BIGINT", "")], "widen") is None
    assert evolved([id_, name], [id_, Column("NAME", "VARCHAR", "")], "add_columns") is None
    assert is_widening("INTEGER", "BIGINT") and not is_widening("BIGINT", "DOUBLE")
    assert not is_widening("DECIMAL(18,2)", "DECIMAL(38,3)")  # the scale stays
