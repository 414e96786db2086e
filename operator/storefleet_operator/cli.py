"""`storefleet operator`: run the StoreFleet operator (kopf), the operator image's entrypoint.

Settings: STOREFLEET_* variables (storefleet_operator.settings), checked before anything else:
a bad value exits 1 naming the variable.
Reads: StoreFleet resources (storefleet.io/v1alpha1) and their children from the API server of
the in-cluster service account, else of KUBECONFIG; settings from STOREFLEET_* environment
variables. Writes: each fleet's children (ingest-token Secret, ConfigMap, simulator
StatefulSet, price updater Deployment, SparkApplications insights and bonus), its status and
Events. Runs as ONE replica (`--standalone`: no peering, which is not leader election).

Run: `storefleet operator` (all namespaces) or `storefleet operator -n shop -n demo`;
`--liveness http://0.0.0.0:8080/healthz` serves a probe for the Deployment.
"""

from __future__ import annotations

import click


@click.command("operator")
@click.option("--namespace", "-n", "namespaces", multiple=True,
              help="Watch only this namespace (repeatable); default: all namespaces.")
@click.option("--liveness", default=None, metavar="URL",
              help="Serve a liveness probe, e.g. http://0.0.0.0:8080/healthz.")
@click.option("--verbose", "-v", is_flag=True, help="Log every handler step.")
def operator(namespaces: tuple[str, ...], liveness: str | None, verbose: bool) -> None:
    """Run the StoreFleet operator until SIGTERM/SIGINT."""
    import kopf

    from storefleet.endpoints import SettingError
    from storefleet_operator.settings import OperatorSettings

    try:
        OperatorSettings.from_env()  # the startup handler reads them again, valid by then
    except SettingError as exc:
        raise click.ClickException(str(exc)) from None

    import storefleet_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=verbose)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness,
    )
