"""The trained part: a small YOLOX-style head on the frozen feature maps (PyTorch).

Per stride: a 1x1 stem and two 3x3 convolutions (SiLU), then one 1x1 prediction of the box
offsets (``dx, dy, log w, log h`` in strides, as YOLOX decodes them) and an objectness logit.
Targets: a gap is assigned to the strides its size suits, and there to the cells whose centre
lies inside it and near its centre; objectness is trained on every cell (binary cross-entropy
against 0 elsewhere and, on assigned cells, against 0.5 raised towards 1 by the IoU of the
predicted box: a better box scores higher), the box with a GIoU loss on assigned cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from edgetally.quantize.shelf_train.backbone import STRIDES, ConvParams
from torch import nn

# Box sizes (longer side, input pixels) each stride learns: overlapping, so a gap between two
# ranges is learnt by both.
SIZE_RANGES = ((0.0, 96.0), (48.0, 192.0), (96.0, 1e9))
CENTRE_RADIUS = 1.5  # assigned cells lie within this many strides of the gap's centre
PRIOR = 0.01  # initial objectness
PRIOR_SIDE = 4.0  # initial box side, in strides (what each level's size range centres on)
FOCAL_GAMMA = 0.0  # focal loss on objectness: down-weights the many easy background cells
FOCAL_ALPHA = 0.25
OBJ_FLOOR = 0.5  # objectness target of an assigned cell: this, raised towards 1 by its IoU


class GapHead(nn.Module):
    def __init__(self, channels: Sequence[int], width: int = 64, depth: int = 2) -> None:
        super().__init__()
        self.towers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, width, 1),
                nn.SiLU(),
                *[
                    m
                    for _ in range(depth)
                    for m in (nn.Conv2d(width, width, 3, padding=1), nn.SiLU())
                ],
            )
            for c in channels
        )
        self.preds = nn.ModuleList(nn.Conv2d(width, 5, 1) for _ in channels)
        for p in self.preds:
            assert isinstance(p, nn.Conv2d) and p.bias is not None
            nn.init.normal_(p.weight, std=0.01)
            nn.init.zeros_(p.bias)
            with torch.no_grad():
                p.bias[2:4] = float(np.log(PRIOR_SIDE))
                p.bias[4] = float(np.log(PRIOR / (1 - PRIOR)))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [p(t(f)) for t, p, f in zip(self.towers, self.preds, features, strict=True)]

    def conv_params(self) -> list[ConvParams]:
        """Each level's convolutions as arrays, in graph order (for the ONNX export)."""
        out: list[ConvParams] = []
        for tower, pred in zip(self.towers, self.preds, strict=True):
            convs = [m for m in tower.modules() if isinstance(m, nn.Conv2d)]
            assert isinstance(pred, nn.Conv2d)
            convs.append(pred)
            level: ConvParams = []
            for c in convs:
                assert c.bias is not None
                level.append(
                    (
                        c.weight.detach().numpy().astype(np.float32),
                        c.bias.detach().numpy().astype(np.float32),
                    )
                )
            out.append(level)
        return out


def grids(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell (x, y) and stride of every anchor, levels concatenated as the model orders them."""
    cells, strides = [], []
    for s in STRIDES:
        g = size // s
        yv, xv = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        cells.append(torch.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(torch.full((g * g,), float(s)))
    return torch.cat(cells).float(), torch.cat(strides)


def assign(
    boxes: npt.NDArray[np.float32], cells: torch.Tensor, strides: torch.Tensor
) -> torch.Tensor:
    """The index of the box each anchor learns (-1: background). ``boxes``: input-pixel
    xyxy. Where boxes compete for an anchor, the smallest wins."""
    n = cells.shape[0]
    target = torch.full((n,), -1, dtype=torch.long)
    if len(boxes) == 0:
        return target
    b = torch.from_numpy(boxes)
    centre = (cells + 0.5) * strides[:, None]  # (N, 2)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = torch.maximum(bw, bh)
    bcx, bcy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    inside = (
        (centre[:, None, 0] > b[None, :, 0])
        & (centre[:, None, 0] < b[None, :, 2])
        & (centre[:, None, 1] > b[None, :, 1])
        & (centre[:, None, 1] < b[None, :, 3])
    )
    radius = CENTRE_RADIUS * strides[:, None]
    near = ((centre[:, None, 0] - bcx[None]).abs() < radius) & (
        (centre[:, None, 1] - bcy[None]).abs() < radius
    )
    level_ok = torch.zeros_like(inside)
    primary = torch.zeros_like(inside)
    for level, s in enumerate(STRIDES):
        lo, hi = SIZE_RANGES[level]
        on = strides == s
        fits = (side >= lo) & (side < hi)
        level_ok |= on[:, None] & fits[None]
        # the cell holding the centre, on the level the box fits first: never left out
        g = torch.floor(torch.stack((bcx, bcy), 1) / s)
        here = (
            on[:, None]
            & (cells[:, None, 0] == g[None, :, 0])
            & (cells[:, None, 1] == g[None, :, 1])
        )
        first = (
            fits
            & ~torch.stack(
                [(side >= SIZE_RANGES[k][0]) & (side < SIZE_RANGES[k][1]) for k in range(level)]
            ).any(0)
            if level
            else fits
        )
        primary |= here & first[None]
    ok = (inside & near & level_ok) | primary
    area = (bw * bh)[None].expand(n, -1)
    cost = torch.where(ok, area, torch.full_like(area, float("inf")))
    best, which = cost.min(1)
    target[torch.isfinite(best)] = which[torch.isfinite(best)]
    return target


def decode(raw: torch.Tensor, cells: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """(B, N, 4) offsets -> input-pixel xyxy."""
    centre = (raw[..., :2] + cells) * strides[:, None]
    size = torch.exp(raw[..., 2:4].clamp(-10, 10)) * strides[:, None]
    return torch.cat((centre - size / 2, centre + size / 2), -1)


def flatten(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-level (B, 5, h, w) -> (B, N, 5) in the model's anchor order."""
    return torch.cat([o.flatten(2) for o in outputs], 2).transpose(1, 2)


def giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalised IoU of matching rows of two xyxy tensors."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(1)
    return iou, iou - (hull - union) / (hull + 1e-7)


def loss(
    pred: torch.Tensor,
    targets: Sequence[torch.Tensor],
    boxes: Sequence[npt.NDArray[np.float32]],
    cells: torch.Tensor,
    strides: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total, objectness and box loss of a batch: ``pred`` (B, N, 5), ``targets`` each
    anchor's box index per image, ``boxes`` input-pixel xyxy per image."""
    obj_target = torch.zeros(pred.shape[:2])
    box_losses = []
    positives = 0
    xyxy = decode(pred, cells, strides)
    for i, (t, b) in enumerate(zip(targets, boxes, strict=True)):
        pos = t >= 0
        k = int(pos.sum())
        if not k:
            continue
        positives += k
        truth = torch.from_numpy(b)[t[pos]]
        iou, g = giou(xyxy[i, pos], truth)
        box_losses.append((1.0 - g).sum())
        obj_target[i, pos] = OBJ_FLOOR + (1.0 - OBJ_FLOOR) * iou.detach().clamp(min=0.0)
    norm = max(1, positives)
    logit = pred[..., 4]
    bce = nn.functional.binary_cross_entropy_with_logits(logit, obj_target, reduction="none")
    if FOCAL_GAMMA:
        p = torch.sigmoid(logit)
        away = (obj_target - p).abs() ** FOCAL_GAMMA
        weight = torch.where(obj_target > 0, FOCAL_ALPHA, 1.0 - FOCAL_ALPHA)
        bce = bce * away * weight
    obj = bce.sum() / norm
    box = torch.stack(box_losses).sum() / norm if box_losses else pred.sum() * 0.0
    return obj + 5.0 * box, obj, box
