"""watcherd: keep photo folders free of duplicate clutter."""

__version__ = "0.1.0"
