"""Counting: from frames to line crossings, occupancy and dwell.

Owns the sources (video, images, MOT sequences, cameras, RTSP), the motion gate, the
detectors (on :mod:`edgetally.runtime.backends`), the ByteTrack-style tracker, line and zone
analytics, the pipeline that runs them frame by frame, and the annotated video (scoring
against the truth is :mod:`edgetally.runtime.scoring`'s). May import: runtime.backends,
runtime.types, runtime.errors, models. Never imports uplink or updates:
:mod:`edgetally.runtime.device` wires them together.
"""
