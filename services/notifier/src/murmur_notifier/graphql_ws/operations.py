"""A subscribe message's GraphQL operation, made ready to run. The document
is parsed and validated by graphql-core once per distinct text (bounded
cache); per subscribe, only its variables are coerced and its selection
resolved (fragments, aliases, @skip/@include) into a projector shape. A
subscription becomes an EventsOperation; a query (``viewer``, or
introspection) is executed by graphql-core, being one-off. Anything wrong is
a list of GraphQL errors, for an ``error`` message: never a close."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationType,
    execute_sync,
    get_operation_ast,
    get_variable_values,
    parse,
    validate,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.values import get_argument_values

from murmur_core.auth import USER_ID_PATTERN
from murmur_notifier.graphql_ws import projection
from murmur_notifier.graphql_ws.projection import Projector
from murmur_notifier.graphql_ws.schema import (
    EVENT_TYPE,
    EVENTS_FIELD,
    KINDS_BY_NAME,
    SCHEMA,
    SUBSCRIPTION_TYPE,
)

# Distinct documents kept parsed and validated (each at most the size of a
# client message).
MAX_DOCUMENTS = 256
MAX_AUTHORS = 1000


@dataclass(frozen=True, slots=True)
class EventsOperation:
    """``subscription { events(...) { ... } }``: what a Subscriber needs."""

    kinds: frozenset[str] | None
    authors: frozenset[str] | None
    after: int | None
    projector: Projector


@dataclass(frozen=True, slots=True)
class QueryOperation:
    document: DocumentNode
    operation_name: str | None
    variables: dict[str, Any] | None


Prepared = EventsOperation | QueryOperation | list[GraphQLError]


@functools.lru_cache(maxsize=MAX_DOCUMENTS)
def _document(query: str) -> DocumentNode | tuple[GraphQLError, ...]:
    """``query`` parsed and validated, or its errors (cached either way)."""
    try:
        document = parse(query)
    except GraphQLError as err:
        return (err,)
    errors = validate(SCHEMA, document)
    return tuple(errors) if errors else document


def prepare(query: str, operation_name: str | None, variables: dict[str, Any] | None) -> Prepared:
    document = _document(query)
    if isinstance(document, tuple):
        return list(document)
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return [GraphQLError("Unable to identify operation")]
    if operation.operation == OperationType.QUERY:
        return QueryOperation(document, operation_name, variables)
    if operation.operation != OperationType.SUBSCRIPTION:
        return [GraphQLError(f"{operation.operation.value} operations are not supported")]
    coerced = get_variable_values(SCHEMA, operation.variable_definitions, variables or {})
    if isinstance(coerced, list):
        return coerced
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    # The selection as execution would see it: fragments spread, aliases as
    # response keys, @skip/@include applied with these variables.
    root = collect_fields(SCHEMA, fragments, coerced, SUBSCRIPTION_TYPE, operation.selection_set)
    if len(root) != 1:
        return [GraphQLError("A subscription selects exactly one field: events.")]
    [(root_key, nodes)] = root.items()
    try:
        arguments = get_argument_values(EVENTS_FIELD, nodes[0], coerced)
    except GraphQLError as err:
        return [err]
    filters = _filters(arguments, nodes[0])
    if isinstance(filters, GraphQLError):
        return [filters]
    selected = collect_sub_fields(SCHEMA, fragments, coerced, EVENT_TYPE, nodes)
    shape = (root_key, tuple((key, fields[0].name.value) for key, fields in selected.items()))
    kinds, authors, after = filters
    return EventsOperation(kinds, authors, after, projection.projector(shape))


def _filters(
    arguments: dict[str, Any], node: FieldNode
) -> tuple[frozenset[str] | None, frozenset[str] | None, int | None] | GraphQLError:
    """The events field's arguments, checked beyond what their types say."""
    kinds = arguments.get("kinds")
    if kinds is not None:
        if not kinds:
            return GraphQLError("kinds must not be empty (null: every kind)", node)
        kinds = frozenset(KINDS_BY_NAME[name] for name in kinds)
    authors = arguments.get("authors")
    if authors is not None:
        if not 0 < len(authors) <= MAX_AUTHORS or not all(
            USER_ID_PATTERN.fullmatch(a) for a in authors
        ):
            return GraphQLError(f"authors must be a list of 1 to {MAX_AUTHORS} user ids", node)
        authors = frozenset(authors)
    after = arguments.get("after")
    # Seq is a custom scalar, which graphql-core passes through unchecked.
    if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
        return GraphQLError("after must be a sequence number (an integer >= 0)", node)
    return kinds, authors, after


def execute_query(operation: QueryOperation, user_id: str, token_expires_at: str) -> dict[str, Any]:
    """A query's result, formatted for a ``next`` payload."""
    root = {"viewer": {"userId": user_id, "tokenExpiresAt": token_expires_at}}
    result: ExecutionResult = execute_sync(
        SCHEMA,
        operation.document,
        root_value=root,
        variable_values=operation.variables,
        operation_name=operation.operation_name,
    )
    return dict(result.formatted)
