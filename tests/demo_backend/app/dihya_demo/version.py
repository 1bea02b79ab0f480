"""Version of the demo backend, reported by ``/healthz``."""

__version__ = "1.4.0"
