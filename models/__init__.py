"""Contracts shared by the device and the fleet: the model zoo, bundles and the wire schema.

Light on purpose: stdlib, numpy, pydantic and cryptography only.
"""
