"""Adapters: Kafka consumer and HTTP routes of the ingest service."""
