"""Shelf analytics on the device: facing fill states against a reference, debounced events
(facing_empty, restocked, product_taken) gated by person boxes, and per-bucket counts."""
