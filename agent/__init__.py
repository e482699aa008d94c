"""Edge IDS gateway agent. Importing this package must stay light (numpy, paho-mqtt, pyyaml, LiteRT)."""

__version__ = "0.1.0"
