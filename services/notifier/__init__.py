"""Notifier: subscriptions and Standard Webhooks delivery of review events."""
