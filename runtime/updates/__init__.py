"""Model updates on the device: signed bundles from the fleet.

Owns the updater (verify, download within the fleet's origin and a size cap, install only
newer versions or a signed rollback), the MQTT agent that takes the fleet's signed commands
(never one twice, nor a stale one), the device side that swaps the detector at a frame
boundary and rolls back on failure (model slot), and the health check. May import: counting
(to load and try a detector), uplink.broker (the login), runtime.config, runtime.device,
models.
"""
