"""A rendered shelf scene with exact truth, for tests, benchmarks and demos.

Two shelf boards with four facings each. Every facing holds three textured products; a
script takes them out, puts them back and moves a figure (a person box) in front of the
shelf. Truth is the script itself: which products stand where on every frame, and where the
figure is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from edgetally.runtime.shelf.config import ShelfConfig, parse_config

WIDTH, HEIGHT = 400, 260
FACING_W, PRODUCTS = 90, 3
SHELF_TOP = (20, 140)  # top y of each shelf band; bands are 100 px high, boards below
BAND_H = 100
FACING_X0 = 20


def facing_box(index: int) -> tuple[int, int, int, int]:
    """x1, y1, x2, y2 of facing ``index`` (0..7: top row left to right, then bottom row)."""
    row, col = divmod(index, 4)
    x1 = FACING_X0 + col * FACING_W
    y1 = SHELF_TOP[row]
    return x1, y1, x1 + FACING_W, y1 + BAND_H


def scene_config(confirm_frames: int = 3) -> ShelfConfig:
    return parse_config(scene_config_data(confirm_frames))


def scene_config_data(confirm_frames: int = 3) -> dict[str, Any]:
    """The scene's shelf config as a config file (or a camera's ``shelf:`` block) holds it."""
    regions = []
    for row in range(2):
        y1 = SHELF_TOP[row]
        facings = []
        for col in range(4):
            x1, fy1, x2, fy2 = facing_box(row * 4 + col)
            facings.append(
                {"id": f"f{row * 4 + col}", "polygon": [[x1, fy1], [x2, fy1], [x2, fy2], [x1, fy2]]}
            )
        regions.append(
            {
                "id": f"shelf{row}",
                "polygon": [
                    [FACING_X0, y1],
                    [FACING_X0 + 4 * FACING_W, y1],
                    [FACING_X0 + 4 * FACING_W, y1 + BAND_H],
                    [FACING_X0, y1 + BAND_H],
                ],
                "facings": facings,
            }
        )
    return {"regions": regions, "confirm_frames": confirm_frames}


def _product_sprite(rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A 26x80 box with a label: colour, stripes and 'print'."""
    h, w = 80, 26
    base = rng.integers(30, 220, 3)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = base
    for _ in range(4):
        y = int(rng.integers(5, h - 10))
        img[y : y + int(rng.integers(2, 6))] = rng.integers(0, 255, 3)
    label = rng.integers(0, 255, 3)
    cv2.rectangle(img, (3, 25), (w - 4, 55), label.tolist(), -1)
    for k in range(6):
        cv2.line(
            img,
            (5, 28 + 4 * k),
            (int(rng.integers(8, w - 5)), 28 + 4 * k),
            (255 - label).tolist(),
            1,
        )
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), (20, 20, 20), 1)
    return img


@dataclass(frozen=True, slots=True)
class Person:
    """A figure in front of the shelf; its box is what a person detector would give."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def box(self) -> tuple[float, float, float, float]:
        return float(self.x1), float(self.y1), float(self.x2), float(self.y2)


@dataclass(slots=True)
class ShelfScene:
    """Renders frames from a product layout and a list of people."""

    seed: int = 0
    noise: float = 2.0
    _rng: np.random.Generator = field(init=False)
    _background: npt.NDArray[np.uint8] = field(init=False)
    _sprites: list[list[npt.NDArray[np.uint8]]] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self._rng = np.random.default_rng(self.seed + 1)
        bg = np.full((HEIGHT, WIDTH, 3), (188, 196, 200), np.float32)
        bg += cv2.GaussianBlur(rng.normal(0, 6, (HEIGHT, WIDTH, 1)).astype(np.float32), (0, 0), 6)[
            ..., None
        ]
        for y in SHELF_TOP:
            bg[y + BAND_H : y + BAND_H + 12, 10 : WIDTH - 10] = (60, 80, 110)
        self._background = np.clip(bg, 0, 255).astype(np.uint8)
        self._sprites = [[_product_sprite(rng) for _ in range(PRODUCTS)] for _ in range(8)]

    def render(
        self, stock: npt.NDArray[np.int_], people: tuple[Person, ...] = ()
    ) -> npt.NDArray[np.uint8]:
        """``stock[i]`` products (0..3) stand in facing i, left-aligned; people drawn on top."""
        img = self._background.copy()
        for i in range(8):
            x1, _, _, y2 = facing_box(i)
            for k in range(int(stock[i])):
                sx = x1 + 4 + k * 29
                img[y2 - 82 : y2 - 2, sx : sx + 26] = self._sprites[i][k]
        for p in people:
            body = (70, 60, 150)
            cv2.rectangle(img, (p.x1 + 6, p.y1 + 30), (p.x2 - 6, p.y2), body, -1)
            cx = (p.x1 + p.x2) // 2
            cv2.circle(img, (cx, p.y1 + 15), 14, (140, 170, 210), -1)
            cv2.line(img, (p.x1, p.y1 + 50), (p.x2, p.y1 + 60), (140, 170, 210), 6)
        if self.noise > 0:
            n = self._rng.normal(0, self.noise, img.shape)
            img = np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)
        return img


@dataclass(frozen=True, slots=True)
class ScriptFrame:
    stock: tuple[int, ...]
    people: tuple[Person, ...]


def standing_at(facing: int, height: int = 180) -> Person:
    """A figure in front of one facing (its box inside that facing's columns)."""
    x1, y1, x2, _ = facing_box(facing)
    top = max(0, y1 - 10)
    return Person(x1 + 10, top, x2 - 10, min(HEIGHT, top + height))


def walking(frame: int, start: int, speed: int = 9) -> Person:
    """A figure crossing the whole shelf from left to right."""
    x = -60 + (frame - start) * speed
    return Person(x, 10, x + 60, HEIGHT)


def default_script() -> list[ScriptFrame]:
    """200 frames: a figure walks past; products are taken (all, then one), a facing empties
    with nobody seen, facings are refilled, a figure stands long in front of a full facing."""
    stock = [PRODUCTS] * 8
    frames: list[ScriptFrame] = []
    for i in range(200):
        people: list[Person] = []
        if 10 <= i <= 60:
            people.append(walking(i, 10))
        if 70 <= i <= 84:
            people.append(standing_at(1))
            if i == 77:
                stock[1] = 0  # takes all three
        if 95 <= i <= 104:
            people.append(standing_at(2))
            if i == 100:
                stock[2] = 2  # takes one of three
        if i == 115:
            stock[7] = 0  # sold out while the detector saw nobody
        if 125 <= i <= 134:
            people.append(standing_at(1))
            if i == 130:
                stock[1] = PRODUCTS  # refills
        if 145 <= i <= 185:
            people.append(standing_at(5))  # stands long, changes nothing
        if i == 190:
            stock[7] = PRODUCTS  # refilled (the person was not detected)
        frames.append(ScriptFrame(tuple(stock), tuple(people)))
    return frames
