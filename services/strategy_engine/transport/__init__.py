"""Adapters: Kafka consumer and HTTP routes of the strategy engine."""
