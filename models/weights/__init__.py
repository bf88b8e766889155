"""Model files shipped inside the package, so a fresh install counts offline.

- ``yolox_nano.onnx``: Megvii YOLOX-Nano (COCO-80), ONNX export.
- ``light_weight_person_detector.onnx``: a person-only YOLOX-style detector.

Both come from the Apache-2.0 repository Kazuhito00/Image-Processing-Node-Editor and are
redistributed unchanged under the Apache License 2.0 (``LICENSE-Apache-2.0.txt`` beside
them; ``NOTICE.md`` says where each comes from). The zoo (``models/zoo.json``) names them
with their sha256; this folder holds data only.
"""
