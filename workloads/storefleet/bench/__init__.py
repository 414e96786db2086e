"""Benchmarks: `storefleet bench <name> --json` prints one JSON object."""
