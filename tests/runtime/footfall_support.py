"""Helpers for the footfall tests: synthetic tracks and the shared models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from edgetally.runtime.types import Track, TrackId

from tests.conftest import shared_path

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def at(i: int) -> datetime:
    return T0 + timedelta(seconds=i / 25)


def person(track_id: int, foot_x: float, foot_y: float, w: float = 20, h: float = 60) -> Track:
    """A track whose foot point (bottom-centre) is at (foot_x, foot_y)."""
    return Track(TrackId(track_id), (foot_x - w / 2, foot_y - h, foot_x + w / 2, foot_y), 0.9)


def use_shared_models(monkeypatch: pytest.MonkeyPatch) -> None:
    models = shared_path("models")
    monkeypatch.setenv("EDGETALLY_MODEL_DIRS", str(models))
