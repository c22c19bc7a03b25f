"""Schemas of everything that crosses a service boundary (Kafka topics). Versioned by suffix."""
