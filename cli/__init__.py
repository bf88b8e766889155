"""The `edgetally` command: the composition root, the one place that imports every side."""
