"""The energy ledger: measured edge power against a cloud-streaming baseline.

Owns the sourced assumptions (assumptions, grid.json), the cloud baseline in both
accountings (baseline), the ledger per site and device (ledger) and its report (report).
May import: fleet.store, fleet.errors, models.
"""
