"""FP32 to INT8 with an accuracy gate run through the device's own pre/post-processing."""
