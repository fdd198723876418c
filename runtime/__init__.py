"""The runtime: command line, configuration, daemon, providers, store, telemetry and REER search."""

__version__ = "0.1.0"
