"""Training a shelf-gap detector from YOLO-labelled photos, on a CPU, offline.

A frozen, pretrained YOLOX backbone (YOLOX-Nano by default) gives feature maps of each
augmented photo; a small detection head is trained on them with PyTorch and written into the
backbone's graph, so the result is one ordinary YOLOX-family ONNX model with a manifest
beside it. Model preparation, never run on the device: PyTorch comes with the ``train``
extra. May import models/ and runtime's inference code.
"""
