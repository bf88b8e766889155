"""The frozen feature extractor and the one ONNX file a trained head is merged into.

A YOLOX detector (YOLOX-Nano from the zoo by default) is cut where its feature pyramid hands
over to the detection head: the three maps at strides 8, 16 and 32. The cut graph computes
the features a head is trained on; once trained, the head's layers are written into the same
graph as ONNX nodes, so the result is one ordinary YOLOX-family model (``1 x N x 6``: box
offsets, objectness, class score per anchor) that the device's decoder reads as it reads
YOLOX-Nano.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from edgetally.quantize.errors import QuantizeError

STRIDES = (8, 16, 32)
INPUT = "images"


class TrainError(QuantizeError):
    """Training data, options or the backbone model cannot be used."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise TrainError("onnx is not installed: pip install 'edgetally[train]'") from exc
    return onnx


def default_backbone() -> Path | None:
    """Where the zoo finds yolox-nano on this machine, or None."""
    from edgetally.models.zoo import locate, zoo

    return locate(zoo()["yolox-nano"])


def _feature_outputs(graph: Any) -> list[str]:
    """The tensors each head level starts from: walk back from ``head.cls_preds.{i}`` to the
    stem, whose output both the class and the box branch read; its input is the level's
    feature map."""
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        if node.op_type == "Conv":
            readers[node.input[0]] = readers.get(node.input[0], 0) + 1
    found: list[str] = []
    for level in range(len(STRIDES)):
        pred = next(
            (
                n
                for n in graph.node
                if n.op_type == "Conv" and f"head.cls_preds.{level}.weight" in n.input
            ),
            None,
        )
        if pred is None:
            raise TrainError(
                f"not a YOLOX graph: no head.cls_preds.{level} (the backbone must be a YOLOX "
                "ONNX export such as yolox_nano.onnx)"
            )
        tensor = pred.input[0]
        for _ in range(64):
            if readers.get(tensor, 0) >= 2:
                break
            node = producer.get(tensor)
            if node is None:
                raise TrainError("not a YOLOX graph: the head's stem was not found")
            tensor = node.input[0]
        else:
            raise TrainError("not a YOLOX graph: the head's stem was not found")
        # the stem: Conv -> Sigmoid -> Mul (SiLU); its Conv reads the feature map
        node = producer[tensor]
        while node.op_type != "Conv":
            node = producer[node.input[0]]
        found.append(node.input[0])
    return found


@dataclass(frozen=True, slots=True)
class Backbone:
    """The cut graph (image in, three feature maps out) and what a head needs to know."""

    model: Any  # onnx.ModelProto
    size: int
    channels: tuple[int, ...]
    outputs: tuple[str, ...]

    def save(self, path: Path) -> Path:
        _onnx().save(self.model, str(path))
        return path


def cut_backbone(path: Path, size: int) -> Backbone:
    """YOLOX up to its feature pyramid, for a ``size`` x ``size`` input (a multiple of 32)."""
    onnx = _onnx()
    if size % 32 or not 64 <= size <= 1280:
        raise TrainError(f"--size must be a multiple of 32 in 64..1280, got {size}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise TrainError(f"cannot read backbone {path}: {exc}") from exc
    graph = model.graph
    if len(graph.input) < 1 or graph.input[0].name != INPUT:
        raise TrainError(f"backbone {path.name}: expected one input named {INPUT!r}")
    outputs = _feature_outputs(graph)
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = size
    dims[3].dim_value = size
    del graph.output[:]
    graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in outputs)
    del graph.value_info[:]
    # keep only what the feature maps need
    needed, todo = set(), list(outputs)
    producer = {out: node for node in graph.node for out in node.output}
    while todo:
        t = todo.pop()
        if t in needed:
            continue
        needed.add(t)
        node = producer.get(t)
        if node is not None:
            todo.extend(node.input)
    kept = [n for n in graph.node if any(o in needed for o in n.output)]
    del graph.node[:]
    graph.node.extend(kept)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    model = onnx.shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info
    }
    channels = tuple(shapes[n][1] for n in outputs)
    for n, stride in zip(outputs, STRIDES, strict=True):
        if shapes[n][2:] != [size // stride, size // stride]:
            raise TrainError(f"backbone {path.name}: feature map {n} is {shapes[n]}")
    del model.graph.value_info[:]
    for n in outputs:
        model.graph.output.remove(next(o for o in model.graph.output if o.name == n))
    for n, c, stride in zip(outputs, channels, STRIDES, strict=True):
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(
                n, onnx.TensorProto.FLOAT, [1, c, size // stride, size // stride]
            )
        )
    return Backbone(model, size, channels, tuple(outputs))


# One head level as plain arrays: (weight, bias) of each conv, in order; the last conv gives
# 5 channels (box offsets, objectness logit).
ConvParams = list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]]


def merged_model(backbone: Backbone, levels: Sequence[ConvParams]) -> Any:
    """The backbone with the trained head written in: output ``1 x N x 6`` as YOLOX gives
    ``1 x N x 85`` (offsets, sigmoid objectness, class score; one class, whose score is 1:
    a gap detector has nothing else to tell apart, so objectness alone scores a box)."""
    onnx = _onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    model = onnx.ModelProto()
    model.CopyFrom(backbone.model)
    graph = model.graph
    nodes, inits = [], []
    flat = []
    total = 0
    for level, (feature, convs) in enumerate(zip(backbone.outputs, levels, strict=True)):
        x = feature
        for k, (w, b) in enumerate(convs):
            last = k == len(convs) - 1
            name = f"gap_head.preds.{level}" if last else f"gap_head.{level}.conv{k}"
            inits += [
                numpy_helper.from_array(w.astype(np.float32), f"{name}.weight"),
                numpy_helper.from_array(b.astype(np.float32), f"{name}.bias"),
            ]
            pad = w.shape[2] // 2
            y = f"{name}.out"
            nodes.append(
                helper.make_node(
                    "Conv",
                    [x, f"{name}.weight", f"{name}.bias"],
                    [y],
                    name=name,
                    kernel_shape=list(w.shape[2:]),
                    pads=[pad] * 4,
                    strides=[1, 1],
                )
            )
            if not last:  # SiLU as YOLOX writes it
                nodes.append(helper.make_node("Sigmoid", [y], [f"{y}.sig"], name=f"{name}.sig"))
                nodes.append(
                    helper.make_node("Mul", [y, f"{y}.sig"], [f"{y}.act"], name=f"{name}.act")
                )
                y = f"{y}.act"
            x = y
        p = f"gap_head.out.{level}"
        nodes.append(
            helper.make_node(
                "Split", [x], [f"{p}.box", f"{p}.obj"], axis=1, split=[4, 1], name=f"{p}.split"
            )
        )
        nodes.append(helper.make_node("Sigmoid", [f"{p}.obj"], [f"{p}.score"], name=f"{p}.sig"))
        side = backbone.size // STRIDES[level]
        cells = side * side
        inits.append(numpy_helper.from_array(np.ones((1, 1, side, side), np.float32), f"{p}.class"))
        nodes.append(
            helper.make_node(
                "Concat",
                [f"{p}.box", f"{p}.score", f"{p}.class"],
                [f"{p}.cat"],
                axis=1,
                name=f"{p}.cat",
            )
        )
        shape = f"{p}.shape"
        total += cells
        inits.append(numpy_helper.from_array(np.array([1, 6, cells], np.int64), shape))
        nodes.append(
            helper.make_node("Reshape", [f"{p}.cat", shape], [f"{p}.flat"], name=f"{p}.reshape")
        )
        flat.append(f"{p}.flat")
    nodes.append(helper.make_node("Concat", flat, ["gap_head.all"], axis=2, name="gap_head.all"))
    nodes.append(
        helper.make_node(
            "Transpose", ["gap_head.all"], ["output"], perm=[0, 2, 1], name="gap_head.output"
        )
    )
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, total, 6])
    )
    onnx.checker.check_model(model)
    return model
