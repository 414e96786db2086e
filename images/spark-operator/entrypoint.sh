#!/bin/bash
# Entrypoint of the Spark operator image: give an unknown uid a passwd entry (spark-submit and
# Hadoop look the user up), then run the operator under tini, which reaps the spark-submit
# children the controller starts. Arguments go to the operator, e.g. `controller start ...`.
set -euo pipefail
if ! getent passwd "$(id -u)" >/dev/null 2>&1; then
    for lib in /usr/lib/*/libnss_wrapper.so /usr/lib/libnss_wrapper.so; do
        [ -s "$lib" ] || continue
        NSS_WRAPPER_PASSWD="$(mktemp)"
        NSS_WRAPPER_GROUP="$(mktemp)"
        printf 'spark:x:%s:%s:%s:%s:/bin/false\n' "$(id -u)" "$(id -g)" "${SPARK_USER_NAME:-anonymous uid}" "${SPARK_HOME:-/opt/spark}" >"$NSS_WRAPPER_PASSWD"
        printf 'spark:x:%s:\n' "$(id -g)" >"$NSS_WRAPPER_GROUP"
        export LD_PRELOAD="$lib" NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
        break
    done
fi
exec "$(command -v tini)" -s -- /usr/bin/spark-operator "$@"
