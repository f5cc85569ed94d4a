"""Names, SYSTEM/NAME and id prefixes: which one a query names, and the exit codes otherwise."""

import pytest

from gdosctl.errors import NOT_FOUND, USAGE, CtlError
from gdosctl.resolve import Named, pick

ITEMS = [
    Named("a1b2c3d4e5f6", "web-1", "shop"),
    Named("a1ffffffffff", "web-1", "staging"),
    Named("0badc0ffee00", "db-1", "shop"),
    Named("77aa00000000", "77aa", "shop"),  # a name that looks like an id prefix
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a1b2c3d4e5f6", "a1b2c3d4e5f6"),  # a whole id
        ("shop/web-1", "a1b2c3d4e5f6"),
        ("staging/web-1", "a1ffffffffff"),
        ("db-1", "0badc0ffee00"),  # a unique name
        ("0bad", "0badc0ffee00"),  # a unique id prefix
        ("a1b", "a1b2c3d4e5f6"),
        ("77aa", "77aa00000000"),  # the name wins over prefixes
    ],
)
def test_a_query_names_one_item(query, expected):
    assert pick("instance", query, ITEMS).id == expected


def test_a_name_in_several_systems_is_ambiguous_and_lists_them():
    with pytest.raises(CtlError) as info:
        pick("instance", "web-1", ITEMS)
    assert info.value.code == USAGE
    assert "shop/web-1 (a1b2c3d4e5f6)" in info.value.message
    assert "staging/web-1 (a1ffffffffff)" in info.value.message
    assert "SYSTEM/NAME" in info.value.message


def test_a_short_prefix_of_several_ids_is_ambiguous():
    with pytest.raises(CtlError) as info:
        pick("instance", "a1", ITEMS)
    assert info.value.code == USAGE


@pytest.mark.parametrize("query", ["nope", "shop/nope", "zz", "other/web-1"])
def test_nothing_matching_is_not_found(query):
    with pytest.raises(CtlError) as info:
        pick("instance", query, ITEMS)
    assert info.value.code == NOT_FOUND
    assert f"no instance {query!r}" in info.value.message
