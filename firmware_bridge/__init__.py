"""Hardware adapters behind small protocols, each with a simulator usable in tests."""
