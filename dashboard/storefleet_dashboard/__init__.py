"""The StoreFleet Panel dashboard: live insights per store and for ALL, coupons, fleet status."""
