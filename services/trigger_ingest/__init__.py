"""Trigger ingest: CloudEvents in (Kafka, HTTP), validated per category, deduplicated, dead-lettered."""
