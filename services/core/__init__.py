"""Shared plumbing: settings, database, Kafka, outbox relay, HTTP, observability and the CLI."""
