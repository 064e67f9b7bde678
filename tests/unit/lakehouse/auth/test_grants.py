import pytest

from lakehouse.auth.grants import (
    Principal,
    Privilege,
    Role,
    grant_patterns,
    parse_patterns,
    parse_privileges,
)
from lakehouse.errors import Forbidden, InvalidInput


def test_patterns_cover_a_teams_prefix_and_named_datasets() -> None:
    reader = Principal("team", Role.READER, datasets=parse_patterns("sales_*, hr_people"))
    assert reader.granted("sales_eu") and reader.granted("hr_people")
    assert not reader.granted("hr_people_old") and not reader.granted("marketing")
    assert Principal("root", Role.ADMIN, datasets=("nothing_*",)).granted("anything")


@pytest.mark.parametrize("bad", ["Sales_*", "sales/../x", "[a-z]*", "a" * 64, "sales?"])
def test_a_pattern_that_is_not_a_name_with_wildcards_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match="dataset pattern"):
        parse_patterns(bad)


def test_replace_is_a_privilege_of_its_own() -> None:
    writer = Principal("loader", Role.WRITER, datasets=("sales_*",))
    writer.require(Privilege.APPEND, "sales_eu")
    with pytest.raises(Forbidden, match=r"may not replace dataset 'sales_eu'.*--allow replace"):
        writer.require(Privilege.REPLACE, "sales_eu")
    trusted = Principal("loader", Role.WRITER, parse_privileges("replace"), ("sales_*",))
    trusted.require(Privilege.REPLACE, "sales_eu")


def test_a_refusal_names_the_missing_grant_before_the_privilege() -> None:
    reader = Principal("analyst", Role.READER, datasets=("a_*",))
    with pytest.raises(Forbidden, match=r"is not granted dataset 'b_1' \(it is granted a_\*\)"):
        reader.require(Privilege.APPEND, "b_1")
    with pytest.raises(Forbidden, match=r"may not append.*--role writer"):
        reader.require(Privilege.APPEND, "a_1")
    with pytest.raises(Forbidden, match=r"may not manage tokens.*--role admin"):
        reader.require(Privilege.ADMIN)


def test_only_replace_can_be_granted_on_top_of_a_role() -> None:
    with pytest.raises(InvalidInput, match="cannot grant 'admin'"):
        parse_privileges("admin")


@pytest.mark.parametrize(
    "given", ["", " , ", [], [""]], ids=["empty", "blanks", "no-item", "blank"]
)
def test_no_pattern_at_all_is_refused_not_read_as_every_dataset(given: str | list[str]) -> None:
    with pytest.raises(InvalidInput, match=r"no dataset pattern given.*`\*` for every dataset"):
        parse_patterns(given)


def test_an_admin_token_takes_no_narrowing_patterns() -> None:
    assert grant_patterns(Role.ADMIN, ["*"]) == ("*",)
    assert grant_patterns(Role.READER, "sales_*") == ("sales_*",)
    with pytest.raises(InvalidInput, match="admin token is granted every dataset"):
        grant_patterns(Role.ADMIN, "sales_*")
