"""The ``fields`` partial-response grammar: parsing, errors, apply and selects."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from murmur_gateway.fields import (
    ALL,
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    FieldSyntaxError,
    Projection,
    compile_fields,
)


def _post(number: int) -> dict[str, Any]:
    return {
        "id": f"p{number}",
        "author_id": f"u{number}",
        "created_at": "2031-05-06T07:08:09.123Z",
        "ciphertext": "AAE=",
        "key_id": "k1",
    }


PAGE: dict[str, Any] = {
    "items": [_post(1), _post(2)],
    "next_cursor": "cur",
    "etag": "e1",
}


def _apply(expression: str, value: Any) -> Any:
    return compile_fields(expression).apply(value)


def test_google_docs_example_over_a_page() -> None:
    assert _apply("items(id,author_id),next_cursor", PAGE) == {
        "items": [{"id": "p1", "author_id": "u1"}, {"id": "p2", "author_id": "u2"}],
        "next_cursor": "cur",
    }


def test_apply_leaves_the_input_untouched() -> None:
    before = copy.deepcopy(PAGE)
    out = _apply("items(id)", PAGE)
    assert before == PAGE
    assert out["items"][0] is not PAGE["items"][0]


def test_bare_key_keeps_the_whole_value_as_is() -> None:
    out = _apply("items", PAGE)
    assert out == {"items": PAGE["items"]}
    assert out["items"] is PAGE["items"]


def test_slash_path_selects_deep_keys() -> None:
    value = {"a": {"b": {"c": 1, "d": 2}, "e": 3}, "f": 4}
    assert _apply("a/b/c", value) == {"a": {"b": {"c": 1}}}
    assert _apply("a/b/c", value) == _apply("a(b(c))", value)
    assert _apply("a/b(c,d),f", value) == {"a": {"b": {"c": 1, "d": 2}}, "f": 4}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("a(b),a(c)", {"a": {"b": 1, "c": 2}}),
        ("a/b,a/c", {"a": {"b": 1, "c": 2}}),
        ("a(b),a", {"a": {"b": 1, "c": 2, "d": 3}}),
        ("a,a(b)", {"a": {"b": 1, "c": 2, "d": 3}}),
        ("a(b),a(b)", {"a": {"b": 1}}),
    ],
)
def test_repeated_keys_merge(expression: str, expected: dict[str, Any]) -> None:
    assert _apply(expression, {"a": {"b": 1, "c": 2, "d": 3}, "z": 0}) == expected


WILD: dict[str, Any] = {
    "x": {"id": 1, "n": 2},
    "y": [{"id": 2, "n": 3}, {"n": 4}],
    "z": 5,
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*", WILD),
        ("*/id", {"x": {"id": 1}, "y": [{"id": 2}, {}], "z": 5}),
        ("*(id)", {"x": {"id": 1}, "y": [{"id": 2}, {}], "z": 5}),
        ("*,x(n)", {"x": {"n": 2}, "y": WILD["y"], "z": 5}),
        ("x(n),*", {"x": {"n": 2}, "y": WILD["y"], "z": 5}),
        ("*(id),x", {"x": {"id": 1, "n": 2}, "y": [{"id": 2}, {}], "z": 5}),
        ("*(id),*(n)", WILD),
        ("x(*)", {"x": {"id": 1, "n": 2}}),
        ("y/*", {"y": WILD["y"]}),
    ],
)
def test_wildcard(expression: str, expected: dict[str, Any]) -> None:
    assert _apply(expression, WILD) == expected


def test_wildcard_alone_is_the_identity() -> None:
    assert compile_fields("*") is ALL
    assert ALL is Projection.ALL
    assert ALL.apply(PAGE) is PAGE
    assert str(ALL) == "*"


def test_unknown_keys_are_ignored() -> None:
    assert _apply("nope,items(nope,id),next_cursor/deeper", PAGE) == {
        "items": [{"id": "p1"}, {"id": "p2"}],
        "next_cursor": "cur",
    }
    assert _apply("nope", PAGE) == {}


def test_output_follows_the_input_order() -> None:
    out = _apply("c,a", {"a": 1, "b": 2, "c": 3})
    assert list(out) == ["a", "c"]


def test_lists_of_dicts_and_nested_lists() -> None:
    assert _apply("id", [_post(1), _post(2)]) == [{"id": "p1"}, {"id": "p2"}]
    assert _apply("a/id", {"a": [[{"id": 1, "n": 2}], []]}) == {"a": [[{"id": 1}], []]}
    assert _apply("a(id)", {"a": []}) == {"a": []}


@pytest.mark.parametrize("scalar", [5, "text", None, True, 2.5, b"\x00"])
def test_a_selection_inside_a_scalar_keeps_the_scalar(scalar: Any) -> None:
    assert _apply("a(b)", {"a": scalar, "c": 1}) == {"a": scalar}
    assert _apply("a/b", [scalar, {"a": scalar}]) == [scalar, {"a": scalar}]
    assert _apply("a(b)", scalar) == scalar


@pytest.mark.parametrize(
    ("expression", "path", "expected"),
    [
        ("items(id)", ["items", "ciphertext"], False),
        ("items(id)", ["items", "id"], True),
        ("items(id)", ["items"], True),
        ("items(id)", ["next_cursor"], False),
        ("items(id)", ["items", "id", "deeper"], True),
        ("items(id)", [], True),
        ("items", ["items", "ciphertext", "x"], True),
        ("a/b/c", ["a", "b"], True),
        ("a/b/c", ["a", "x"], False),
        ("a/b/c", ["a", "b", "d"], False),
        ("*", ["anything", "at", "all"], True),
        ("*(id)", ["x", "id"], True),
        ("*(id)", ["x", "n"], False),
        ("*,items(id)", ["items", "ciphertext"], False),
        ("*,items(id)", ["etag", "anything"], True),
        ("*(id),items", ["items", "ciphertext"], True),
    ],
)
def test_selects(expression: str, path: list[str], expected: bool) -> None:
    assert compile_fields(expression).selects(path) is expected


def test_selects_accepts_tuples_and_refuses_a_bare_string() -> None:
    projection = compile_fields("items(id)")
    assert projection.selects(("items", "id")) is True
    with pytest.raises(TypeError, match="sequence of keys"):
        projection.selects("items")


@pytest.mark.parametrize(
    ("expression", "canonical"),
    [
        ("b,a", "a,b"),
        ("a(c,b)", "a(b,c)"),
        ("a(b(c))", "a/b/c"),
        ("a(b),a(c)", "a(b,c)"),
        ("a(b),a", "a"),
        ("z,*,a", "*"),
        ("*(id),*(n)", "*(id,n)"),
        ("*(id),a(id),b", "*/id,b"),
        ("x(*),y", "x,y"),
        ("*,items(id)", "*,items/id"),
        ("B,_,a", "B,_,a"),
    ],
)
def test_canonical_form(expression: str, canonical: str) -> None:
    projection = compile_fields(expression)
    assert projection.canonical == canonical
    assert str(projection) == canonical
    assert compile_fields(canonical).canonical == canonical


def test_equivalent_expressions_give_equal_projections() -> None:
    first, second = (
        compile_fields("items(id,author_id),next_cursor"),
        compile_fields("next_cursor,items/author_id,items/id"),
    )
    assert first == second
    assert hash(first) == hash(second)
    assert first != compile_fields("items(id),next_cursor")


def test_compiled_projections_are_cached_and_immutable() -> None:
    projection = compile_fields("items(id),next_cursor")
    assert compile_fields("items(id),next_cursor") is projection
    assert compile_fields("next_cursor,items(id)") is not projection
    with pytest.raises(dataclasses.FrozenInstanceError):
        projection.canonical = "x"  # type: ignore[misc]


def test_limits_are_inclusive() -> None:
    longest = "a" * MAX_EXPRESSION_LENGTH
    assert compile_fields(longest).canonical == longest
    deepest = "/".join(["a"] * MAX_DEPTH)
    assert compile_fields(deepest).selects(["a"] * MAX_DEPTH) is True
    nested = "a(" * (MAX_DEPTH - 1) + "a" + ")" * (MAX_DEPTH - 1)
    assert compile_fields(nested).canonical == deepest


@pytest.mark.parametrize(
    ("expression", "reason", "position"),
    [
        ("", "empty expression", 0),
        (",", "leading ','", 0),
        (",a", "leading ','", 0),
        ("a(,b)", "leading ','", 2),
        ("a,", "trailing ','", 1),
        ("a(b,)", "trailing ','", 3),
        ("a,,b", "double ','", 2),
        ("a()", "empty selection", 2),
        ("ab(c,d()", "empty selection", 7),
        ("a(", "unclosed '('", 1),
        ("a(b", "unclosed '('", 1),
        ("a(b(c)", "unclosed '('", 1),
        ("a(b(c", "unclosed '('", 3),
        (")", "unexpected ')'", 0),
        ("a)", "unexpected ')'", 1),
        ("a(b))", "unexpected ')'", 4),
        ("a,)", "trailing ','", 1),
        ("(a)", "expected a field name", 0),
        ("a,(b)", "expected a field name", 2),
        ("/a", "leading '/'", 0),
        ("a,/b", "leading '/'", 2),
        ("a(/b)", "leading '/'", 2),
        ("a/", "trailing '/'", 1),
        ("a/,b", "trailing '/'", 1),
        ("a/(b)", "trailing '/'", 1),
        ("a(b/)", "trailing '/'", 3),
        ("a//b", "double '/'", 2),
        ("1a", "field name starts with a digit", 0),
        ("a/9", "field name starts with a digit", 2),
        ("a-b", "invalid character '-'", 1),
        ("a.b", "invalid character '.'", 1),
        ("a,é", "invalid character 'é'", 2),
        ("a,\x00", "invalid character '\\x00'", 2),
        ("'", 'invalid character "\'"', 0),
        (" a", "whitespace is not allowed", 0),
        ("a b", "whitespace is not allowed", 1),
        ("a, b", "whitespace is not allowed", 2),
        ("a(b )", "whitespace is not allowed", 3),
        ("a\t", "whitespace is not allowed", 1),
        ("a,b\n", "whitespace is not allowed", 3),
        ("a*", "unexpected '*'", 1),
        ("*a", "unexpected 'a'", 1),
        ("a(b)c", "unexpected 'c'", 4),
        ("a(b)(c)", "unexpected '('", 4),
        ("a(b)/c", "unexpected '/'", 4),
        ("a" * (MAX_EXPRESSION_LENGTH + 1), "expression longer than 1024 characters", 1024),
        ("a," * 600, "expression longer than 1024 characters", 1024),
        ("/".join(["a"] * (MAX_DEPTH + 1)), "nesting deeper than 16 levels", 32),
        ("a(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH, "nesting deeper than 16 levels", 32),
        ("a(" * 40, "nesting deeper than 16 levels", 32),
        ("a/" * 8 + "b(" * 8 + ")", "nesting deeper than 16 levels", 32),
    ],
)
def test_syntax_errors(expression: str, reason: str, position: int) -> None:
    with pytest.raises(FieldSyntaxError) as caught:
        compile_fields(expression)
    assert (caught.value.reason, caught.value.position) == (reason, position)
    at = "opened at" if reason == "unclosed '('" else "at"
    assert str(caught.value) == f"{reason} {at} position {position}"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("a(b))", "unexpected ')' at position 4"),
        ("(a)", "expected a field name at position 0"),
        ("items(id", "unclosed '(' opened at position 5"),
        ("abc()", "empty selection at position 4"),
    ],
)
def test_error_messages_read_well(expression: str, message: str) -> None:
    with pytest.raises(FieldSyntaxError) as caught:
        compile_fields(expression)
    assert str(caught.value) == message


def test_errors_are_raised_afresh_each_time() -> None:
    for _ in range(2):
        with pytest.raises(FieldSyntaxError) as caught:
            compile_fields("items(id,,author_id)")
        assert (caught.value.reason, caught.value.position) == ("double ','", 9)
