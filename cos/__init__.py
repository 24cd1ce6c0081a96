"""cos: a Chief-of-State-compatible event-sourcing runtime on Ray and PostgreSQL."""

__version__ = "0.1.0"
