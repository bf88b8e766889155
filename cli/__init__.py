"""edgetally: edge analytics for shops.

This root package (the repository's cli/ folder) holds the command line, the composition
root: the one place that imports every side. The sides live in edgetally.models,
edgetally.runtime, edgetally.firmware_bridge, edgetally.quantize and edgetally.fleet.
"""
