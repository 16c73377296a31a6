"""The dyzur bridge: API, ticket lifecycle, stores and CLI."""
