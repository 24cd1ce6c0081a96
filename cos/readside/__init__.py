"""Read sides: ordered, at-least-once delivery of journal events to read handlers."""
