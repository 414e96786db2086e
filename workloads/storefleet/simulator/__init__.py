"""The store simulator: the e-commerce side of the platform, producing the data it analyses."""
