#!/usr/bin/env bash
# Graceful executor decommissioning (spark.decommission.enabled): Spark on Kubernetes runs
# /opt/decom.sh as the executor container's preStop hook. Send SIGPWR to the executor JVM, which
# migrates its blocks and exits; wait for it to go.
set -u
pid="$(pgrep -f 'KubernetesExecutorBackend' | head -n1 || true)"
[ -n "$pid" ] || exit 0
kill -s PWR "$pid" 2>/dev/null || exit 0
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
