"""GraphQL operations made ready to run, in process (no stack): one projector
and one encoding per distinct selection whatever the document's spelling or
variables, selections resolved as GraphQL execution would resolve them, and
errors returned for an ``error`` message, never raised."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graphql import GraphQLError

from murmur_notifier.events import Delivery
from murmur_notifier.graphql_ws import operations, projection
from murmur_notifier.graphql_ws.operations import EventsOperation, QueryOperation


def _delivery(seq: int, kind: str = "post.created", **data: Any) -> Delivery:
    return Delivery(
        seq=seq,
        kind=kind,
        author_id=str(data.get("author_id", "")),
        encoded=b"{}",
        received_at=0.0,
        event_id=f"event{seq}",
        occurred_at="2026-12-01T12:00:00Z",
        data=data,
    )


def _prepare(query: str, variables: dict[str, Any] | None = None) -> EventsOperation:
    prepared = operations.prepare(query, None, variables)
    assert isinstance(prepared, EventsOperation), prepared
    return prepared


def _errors(query: str, variables: dict[str, Any] | None = None, name: str | None = None) -> str:
    prepared = operations.prepare(query, name, variables)
    assert isinstance(prepared, list), prepared
    assert all(isinstance(e, GraphQLError) for e in prepared)
    return " ".join(e.message for e in prepared)


def test_one_selection_shares_one_projector_and_one_encoding() -> None:
    a = _prepare("subscription($a: Seq) { events(after: $a) { seq authorId } }", {"a": 1})
    b = _prepare("subscription Other {\n  events(after: 7) { seq, authorId }\n}")
    assert a.projector is b.projector
    assert (a.after, b.after) == (1, 7)
    event = _delivery(5, author_id="carol", post_id="p")
    encoded = a.projector.encode(event)
    # Same bytes object: encoded once, whatever number of subscriptions.
    assert b.projector.encode(event) is encoded
    assert json.loads(encoded) == {"data": {"events": {"seq": 5, "authorId": "carol"}}}
    # Another selection (here only an alias) is another projector.
    c = _prepare("subscription { events { seq writer: authorId } }")
    assert c.projector is not a.projector
    assert json.loads(c.projector.encode(event)) == {
        "data": {"events": {"seq": 5, "writer": "carol"}}
    }


def test_aliases_fragments_and_directives_resolve_as_execution_would() -> None:
    query = """
    subscription($full: Boolean!) {
      e: events {
        __typename
        id: eventId
        ... on Event { seq }
        ...F
        kind @include(if: $full)
        postId @skip(if: $full)
      }
    }
    fragment F on Event { authorId seq }
    """
    event = _delivery(9, author_id="dave", post_id="p9")
    full = json.loads(_prepare(query, {"full": True}).projector.encode(event))["data"]["e"]
    assert list(full) == ["__typename", "id", "seq", "authorId", "kind"]
    assert full == {
        "__typename": "Event",
        "id": "event9",
        "seq": 9,
        "authorId": "dave",
        "kind": "POST_CREATED",
    }
    lean = json.loads(_prepare(query, {"full": False}).projector.encode(event))["data"]["e"]
    assert list(lean) == ["__typename", "id", "seq", "authorId", "postId"]


def test_every_kind_reads_its_payload_fields() -> None:
    op = _prepare(
        "subscription { events { kind postId authorId audience ciphertextSize reason "
        "followerId followeeId occurredAt } }"
    )
    post = op.projector.encode(
        _delivery(1, author_id="a", post_id="p", audience="AUDIENCE_FOLLOWERS", ciphertext_size=12)
    )
    follow = op.projector.encode(
        _delivery(2, "follow.deleted", follower_id="me", followee_id="them")
    )
    deleted = op.projector.encode(_delivery(3, "post.deleted", post_id="p", reason="expired"))
    assert json.loads(post)["data"]["events"] == {
        "kind": "POST_CREATED",
        "postId": "p",
        "authorId": "a",
        "audience": "FOLLOWERS",
        "ciphertextSize": 12,
        "reason": None,
        "followerId": None,
        "followeeId": None,
        "occurredAt": "2026-12-01T12:00:00Z",
    }
    follow_fields = json.loads(follow)["data"]["events"]
    assert (follow_fields["kind"], follow_fields["followerId"], follow_fields["postId"]) == (
        "FOLLOW_DELETED",
        "me",
        None,
    )
    assert json.loads(deleted)["data"]["events"]["reason"] == "expired"


def test_arguments_become_filters() -> None:
    op = _prepare(
        'subscription($k: [EventKind!]) { events(kinds: $k, authors: ["ann", 7]) { seq } }',
        {"k": ["POST_CREATED", "FOLLOW_CREATED"]},
    )
    assert op.kinds == frozenset({"post.created", "follow.created"})
    assert op.authors == frozenset({"ann", "7"})
    assert op.after is None
    everything = _prepare("subscription { events { seq } }")
    assert (everything.kinds, everything.authors) == (None, None)


@pytest.mark.parametrize(
    ("query", "variables", "name", "message"),
    [
        ("subscription { events { seq }", None, None, "Syntax Error"),
        ("subscription { events { nope } }", None, None, "Cannot query field 'nope'"),
        ("subscription { events }", None, None, "must have a selection"),
        ("subscription { a: events { seq } b: events { seq } }", None, None, "only one"),
        ("subscription($a: Seq!) { events(after: $a) { seq } }", None, None, "$a"),
        ("subscription { events(after: -1) { seq } }", None, None, "after must be"),
        ('subscription { events(after: "1") { seq } }', None, None, "after must be"),
        ("subscription { events(kinds: []) { seq } }", None, None, "kinds must not be empty"),
        ('subscription { events(authors: ["a b"]) { seq } }', None, None, "authors must"),
        ("subscription A { events { seq } }", None, "B", "Unable to identify operation"),
        ("mutation { events }", None, None, "mutation"),
    ],
)
def test_bad_operations_are_errors_not_exceptions(
    query: str, variables: dict[str, Any] | None, name: str | None, message: str
) -> None:
    assert message in _errors(query, variables, name)


def test_documents_are_parsed_and_validated_once() -> None:
    query = "subscription { events { seq eventId } }"
    _prepare(query)
    hits = operations._document.cache_info().hits
    _prepare(query, {"unused": 1})
    assert operations._document.cache_info().hits == hits + 1


def test_queries_are_executed() -> None:
    prepared = operations.prepare("query Me { viewer { userId tokenExpiresAt } }", "Me", None)
    assert isinstance(prepared, QueryOperation)
    result = operations.execute_query(prepared, "ann", "2026-12-01T12:00:00Z")
    assert result == {
        "data": {"viewer": {"userId": "ann", "tokenExpiresAt": "2026-12-01T12:00:00Z"}}
    }


def test_caches_are_bounded() -> None:
    op = _prepare("subscription { events { seq } }")
    for seq in range(projection.MAX_ENCODED + 50):
        op.projector.encode(_delivery(seq))
    assert len(op.projector._encoded) == projection.MAX_ENCODED
    for n in range(projection.MAX_PROJECTORS + 10):
        _prepare(f"subscription {{ events {{ seq a{n}: eventId }} }}")
    assert len(projection._projectors) == projection.MAX_PROJECTORS
