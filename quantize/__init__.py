"""Offline model preparation: FP32 to INT8 with an accuracy gate run through the device's own
pre/post-processing, and (``shelf_train``, with the ``train`` extra) training a shelf-gap
detector on labelled photos. Never imported by the device's runtime."""
