"""Typed views of the JSON-shaped answers (``dict[str, object]``) of the energy reports."""

from __future__ import annotations

from typing import Any


def obj(value: object) -> dict[str, Any]:
    """``value``, which must be a JSON object, with its members open to indexing."""
    assert isinstance(value, dict), f"not a JSON object: {type(value).__name__}"
    return value


def objs(value: object) -> list[dict[str, Any]]:
    """``value``, which must be a list of JSON objects."""
    assert isinstance(value, list), f"not a JSON list: {type(value).__name__}"
    return [obj(v) for v in value]
