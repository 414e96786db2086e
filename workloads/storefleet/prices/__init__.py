"""Prices: the price updater and the back-fill of price history (the price monitor joins here)."""
