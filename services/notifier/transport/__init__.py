"""Adapters: Kafka consumer and HTTP routes of the notifier."""
