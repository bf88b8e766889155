"""Uplink: what leaves the device, and how.

Owns the aggregator (time buckets of a source's counts -> wire aggregates), the outbox
(SQLite: epoch, sequence numbers, messages until a PUBACK takes them), the MQTT publisher,
the rows the broker refused (refusals) and the broker login. May import: runtime.types,
runtime.errors, models. Never imports counting or updates.
"""
