"""The event journal and snapshot store."""
