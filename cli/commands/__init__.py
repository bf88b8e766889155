"""Subcommands of `edgetally`, one file per topic; each exposes ``register(app)``."""
