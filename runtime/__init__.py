"""Everything that runs on the device: sources, gates, backends, tracking, analytics."""
