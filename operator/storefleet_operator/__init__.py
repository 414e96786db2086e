"""The StoreFleet operator (kopf): keeps each StoreFleet's children and status current.

Modules: `handlers` (the kopf decorators, thin), `children` (the pure function fleet -> desired
children), `apply` (server-side apply and pruning against the API server), `status` (the pure
function observed children -> fleet status), `settings` (images and names from the environment),
`cli` (the `storefleet operator` command).
"""
