"""Frame sources: video files, image folders, MOT sequences, cameras and network streams.

Every frame carries a UTC timestamp: for files, the start time plus the frame's position at
the file's frame rate; for live sources, the wall clock when the frame was read. Live sources
reconnect with exponential backoff and give up with a clear error after ``max_retries``.
"""

from __future__ import annotations

import configparser
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

# OpenCV's and FFmpeg's own log lines ("moov atom not found") would reach the user before
# the one-line error a source raises: silent unless asked for (set before cv2 first logs).
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

import cv2
import numpy.typing as npt
from edgetally.runtime.errors import SourceError
from edgetally.runtime.types import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".ts"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class FrameSource(Protocol):
    name: str
    fps: float
    live: bool

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SourceOptions:
    start: datetime | None = None  # timestamp of a file's first frame (default: now, UTC)
    stride: int = 1  # keep every n-th frame of a file
    max_frames: int | None = None  # stop after this many kept frames
    max_fps: float | None = None  # live sources: drop frames above this rate
    max_retries: int = 5  # live sources: reconnect attempts before giving up
    backoff_s: float = 0.5  # first reconnect delay, doubled each time up to 30 s


class _FileSource:
    """Frames read one by one from a file-like origin at a known frame rate."""

    live = False

    def __init__(self, name: str, fps: float, options: SourceOptions) -> None:
        self.name = name
        self.fps = fps
        self.options = options
        self._start = options.start or datetime.now(UTC)
        if self._start.tzinfo is None:
            raise SourceError("source start time must be timezone-aware (UTC)")

    def _read(self) -> Iterator[npt.NDArray[Any]]:
        raise NotImplementedError

    def _length(self) -> int | None:
        """Frames in the file before the stride, None when the file does not say."""
        return None

    @property
    def total(self) -> int | None:
        """Frames this source will yield (after the stride and ``max_frames``), for a
        progress bar; None when unknown."""
        length = self._length()
        if length is None:
            return None
        kept = math.ceil(length / max(1, self.options.stride))
        limit = self.options.max_frames
        return kept if limit is None else min(kept, limit)

    def __iter__(self) -> Iterator[Frame]:
        kept = 0
        stride = max(1, self.options.stride)
        for index, image in enumerate(self._read()):
            if index % stride:
                continue
            ts = self._start + timedelta(seconds=index / self.fps)
            yield Frame(image=image, index=index, timestamp=ts)
            kept += 1
            if self.options.max_frames is not None and kept >= self.options.max_frames:
                return

    def close(self) -> None:
        pass


class VideoFileSource(_FileSource):
    def __init__(self, path: Path, options: SourceOptions, fps: float | None = None) -> None:
        if not path.is_file():
            raise SourceError(f"video not found: {path}")
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video {path}: not a readable video file")
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise SourceError(f"cannot decode video {path}: no frame could be read")
        self._first: npt.NDArray[Any] | None = first
        rate = fps or float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        super().__init__(path.name, rate if 0 < rate < 1000 else 25.0, options)

    def _length(self) -> int | None:
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return count if count > 0 else None

    def _read(self) -> Iterator[npt.NDArray[Any]]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        while True:
            ok, image = self._cap.read()
            if not ok or image is None:
                return
            yield image

    def close(self) -> None:
        self._cap.release()


class ImageFolderSource(_FileSource):
    def __init__(
        self, files: list[Path], name: str, options: SourceOptions, fps: float = 25.0
    ) -> None:
        self._files = files
        super().__init__(name, fps, options)

    @classmethod
    def from_folder(
        cls, folder: Path, options: SourceOptions, fps: float = 25.0
    ) -> ImageFolderSource:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"no images (.jpg, .png, .bmp) in {folder}")
        return cls(files, folder.name, options, fps)

    def _length(self) -> int | None:
        return len(self._files)

    def _read(self) -> Iterator[npt.NDArray[Any]]:
        for path in self._files:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"cannot decode image {path}")
            yield image


class Capture(Protocol):
    """What a live source uses of an open stream: a ``cv2.VideoCapture`` (or a stand-in)."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, npt.NDArray[Any] | None]: ...

    def get(self, prop: int, /) -> float: ...

    def release(self) -> None: ...


class LiveSource:
    """A camera index or a network stream, reopened with backoff when it drops."""

    live = True
    total: int | None = None  # a live source has no end

    def __init__(
        self,
        target: int | str,
        options: SourceOptions,
        opener: Callable[[int | str], Capture] | None = None,
    ) -> None:
        self.target = target
        self.name = f"camera{target}" if isinstance(target, int) else _redact(str(target))
        self.options = options
        self._open: Callable[[int | str], Capture] = opener or (lambda t: cv2.VideoCapture(t))
        self._cap = self._connect(first=True)
        rate = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = rate if 0 < rate < 1000 else 25.0
        self.reconnects = 0

    def _connect(self, first: bool = False) -> Capture:
        delay = self.options.backoff_s
        for attempt in range(self.options.max_retries + 1):
            cap = self._open(self.target)
            if cap.isOpened():
                return cap
            cap.release()
            if attempt < self.options.max_retries:
                log.warning("%s: cannot open, retrying in %.1f s", self.name, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        what = "camera" if isinstance(self.target, int) else "stream"
        state = "cannot be opened" if first else "was lost and did not come back"
        raise SourceError(
            f"{what} {self.name} {state} after {self.options.max_retries} retries "
            "(unplugged, wrong index/URL, or no permission?)"
        )

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        kept = 0
        last = 0.0
        min_gap = 1.0 / self.options.max_fps if self.options.max_fps else 0.0
        while True:
            ok, image = self._cap.read()
            if not ok or image is None:
                self._cap.release()
                self.reconnects += 1
                self._cap = self._connect()
                continue
            now = time.monotonic()
            index += 1
            if min_gap and now - last < min_gap:
                continue  # the frame-rate governor drops it
            last = now
            yield Frame(image=image, index=index - 1, timestamp=datetime.now(UTC))
            kept += 1
            if self.options.max_frames is not None and kept >= self.options.max_frames:
                return

    def close(self) -> None:
        self._cap.release()


def _redact(url: str) -> str:
    """A stream URL without its credentials, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def mot_frame_rate(folder: Path) -> float | None:
    ini = folder / "seqinfo.ini"
    if not ini.is_file():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(ini)
        return float(parser["Sequence"]["frameRate"])
    except (KeyError, ValueError, configparser.Error):
        return None


def open_source(spec: str | Path | int, options: SourceOptions | None = None) -> FrameSource:
    """Open a video file, an image folder, a MOT sequence folder, a camera index or a URL."""
    options = options or SourceOptions()
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return LiveSource(int(spec), options)
    text = str(spec)
    if text.startswith(STREAM_SCHEMES):
        return LiveSource(text, options)
    path = Path(text)
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageFolderSource([path], path.name, options, 1.0)
        return VideoFileSource(path, options)
    fps = mot_frame_rate(path)
    if (path / "img1").is_dir():
        return ImageFolderSource.from_folder(path / "img1", options, fps or 25.0)
    videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if videos and (path / "seqinfo.ini").is_file():
        return VideoFileSource(videos[0], options, fps)
    return ImageFolderSource.from_folder(path, options, fps or 25.0)
