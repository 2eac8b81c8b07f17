"""svctl: a per-service process supervisor (import package ``supervisor``)."""

__version__ = "0.1.0"
