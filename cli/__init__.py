"""Command-line entry points: ``cos`` (serve, migrate, version)."""
