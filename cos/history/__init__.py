"""An entity's stored history: its events and its past states (``cos.v1.HistoryService``)."""
