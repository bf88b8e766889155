"""Inference backends behind one protocol, registered by name; heavy imports are lazy."""

from edgetally.runtime.backends.base import Backend, BackendInfo, TensorSpec
from edgetally.runtime.backends.registry import BACKENDS, available_backends, open_backend

__all__ = ["BACKENDS", "Backend", "BackendInfo", "TensorSpec", "available_backends", "open_backend"]
