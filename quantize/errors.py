"""Error root of the quantization toolchain."""

from __future__ import annotations

from edgetally.models.errors import EdgetallyError


class QuantizeError(EdgetallyError):
    """Quantization failed, or its accuracy gate refused the result."""
