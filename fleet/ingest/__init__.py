"""Ingest: MQTT in, the store out.

Owns the subscription, validation of every message (:func:`edgetally.models.wire.parse`),
batching, dead letters and the ingest counters. May import: fleet.store, fleet.addresses,
fleet.errors, models. Nothing of the fleet imports it but the server that runs it.
"""
