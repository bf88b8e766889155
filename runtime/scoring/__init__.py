"""Scoring: how right the device's counts are, against truth that people made.

Owns the truth readers (MOT annotations, reference files of crossings and zone visits, YOLO
shelf labels), matching counted events to true ones, count accuracy, and one
:func:`~edgetally.runtime.scoring.run.score_run` that ``edgetally eval``, the accuracy
benchmark and the quantize gate all use. May import runtime.counting, runtime.shelf,
runtime.types, runtime.errors. Nothing on the device imports it (an import contract says so):
a device counts, it does not grade itself.
"""
