"""The energy ledger: measured edge power against a cloud-streaming baseline of the same
camera time (methodology: docs/energy.md).

Owns the sourced assumptions and the one energy config (assumptions, grid.json), the cloud
baseline in both accountings (baseline), the ledger per site, device and day (ledger), its
report over the store (report) and the watts over time (series).
May import: fleet.store, fleet.errors, models.
"""
