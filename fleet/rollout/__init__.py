"""Staged rollouts of signed model bundles.

Owns the rollout state machine (plan), the service that keeps bundles and rollout records
and advances stages (service) and the MQTT side that sends commands and reads reports
(mqtt). May import: fleet.errors, models.
"""
