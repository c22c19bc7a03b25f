"""The smits console: server-rendered pages for the strategy office and ops, on the public API."""
