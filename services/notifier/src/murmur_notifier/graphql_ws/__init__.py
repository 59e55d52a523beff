"""graphql-transport-ws, the notifier's second protocol (GRAPHQL.md)."""
