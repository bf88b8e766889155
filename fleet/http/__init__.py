"""The HTTP API and the dashboard's routes.

Owns the FastAPI app (app), bearer tokens (auth), what every router may use (context), the
answers as JSON/CSV/Parquet (export) and one module per endpoint family (traffic, devices,
events, audio, shelf, energy, rollout, dashboard). Leans on fleet.store; never imports
fleet.ingest (ingest's counters reach it as a callable).
"""
