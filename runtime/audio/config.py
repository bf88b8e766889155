"""A microphone's or a sound file's block of the device config (``audio:``), validated
like the rest of the device config; :mod:`edgetally.runtime.config` holds it, the audio
device reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from edgetally.models.topics import ID_PATTERN
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]


class AudioConfig(BaseModel):
    """A sound source measured per bucket: ``mic`` (the default input), ``mic:DEVICE`` (an
    ALSA/PortAudio device name or index) or a sound file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id = "mic"
    source: str = Field(min_length=1, max_length=1024)
    spl_offset_db: float | None = Field(default=None, ge=0.0, le=200.0)
    vad: bool = True
    vad_model: Path | None = None
    classifier: Path | None = None
    class_map: Path | None = None
    event_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    # The inference backend of each model (auto: onnxruntime for ONNX, LiteRT for TFLite)
    # and its OpenVINO device, onnxruntime provider or LiteRT delegate.
    vad_backend: str = "auto"
    vad_accelerator: str | None = Field(default=None, max_length=1024)
    classifier_backend: str = "auto"
    classifier_accelerator: str | None = Field(default=None, max_length=1024)

    @field_validator("vad_backend", "classifier_backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        from edgetally.runtime.backends import BACKENDS

        if value != "auto" and value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}: expected auto, {', '.join(BACKENDS)}")
        return value

    @property
    def live(self) -> bool:
        return self.source == "mic" or self.source.startswith("mic:")

    @model_validator(mode="after")
    def _classifier(self) -> AudioConfig:
        if (self.classifier is None) != (self.class_map is None):
            raise ValueError("classifier and class_map go together")
        return self

    def relative_to(self, base: Path) -> AudioConfig:
        """Paths given relative (the file, the models) taken relative to ``base``."""

        def rel(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else base / p

        source = self.source if self.live else str(rel(Path(self.source)))
        return self.model_copy(
            update={
                "source": source,
                "vad_model": rel(self.vad_model),
                "classifier": rel(self.classifier),
                "class_map": rel(self.class_map),
            }
        )
