"""StoreFleet: real-time analytics for a fleet of e-commerce stores."""

__version__ = "0.1.0"
