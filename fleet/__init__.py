"""The fleet manager: ingest, store, analyst API, energy ledger and rollouts.

Imports edgetally.models only, never the device runtime.
"""
