"""Contracts shared by the device and the fleet: the model zoo, bundles, the wire schema and
the signing of the fleet's commands.

Light on purpose: stdlib, numpy, pydantic and cryptography only.
"""
