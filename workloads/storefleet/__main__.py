"""`python -m storefleet` is the `storefleet` command."""

from storefleet.cli import main

main()
