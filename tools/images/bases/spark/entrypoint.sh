#!/bin/bash
# Container entrypoint of the Spark image, the same contract as the official image's
# /opt/entrypoint.sh that Spark on Kubernetes relies on:
#   driver ARGS...  -> spark-submit in client mode inside the driver pod, bound to the pod IP
#                      (SPARK_DRIVER_BIND_ADDRESS), with ARGS from the submission;
#   executor        -> the Kubernetes executor backend, configured only by environment:
#                      SPARK_DRIVER_URL, SPARK_EXECUTOR_{ID,CORES,MEMORY,POD_IP,POD_NAME},
#                      SPARK_APPLICATION_ID, SPARK_RESOURCE_PROFILE_ID, SPARK_JAVA_OPT_<n>,
#                      SPARK_CLASSPATH, SPARK_EXTRA_CLASSPATH, SPARK_CONF_DIR, HADOOP_*;
#   anything else   -> run as given (pass-through).
# Written for StoreFleet's local Spark base (tools/images/bases/spark); see docs/images.md.
set -euo pipefail

# Pods may run under a uid with no passwd entry (e.g. OpenShift); Hadoop's UserGroupInformation
# then fails. libnss_wrapper supplies one without a writable /etc/passwd.
provide_passwd_entry() {
    local uid gid lib
    uid="$(id -u)"
    gid="$(id -g)"
    getent passwd "$uid" >/dev/null 2>&1 && return 0
    for lib in /usr/lib/*/libnss_wrapper.so /usr/lib/libnss_wrapper.so /lib/*/libnss_wrapper.so; do
        [ -s "$lib" ] || continue
        NSS_WRAPPER_PASSWD="$(mktemp)"
        NSS_WRAPPER_GROUP="$(mktemp)"
        printf 'spark:x:%s:%s:%s:%s:/bin/false\n' "$uid" "$gid" "${SPARK_USER_NAME:-anonymous uid}" "${SPARK_HOME:-/opt/spark}" >"$NSS_WRAPPER_PASSWD"
        printf 'spark:x:%s:\n' "$gid" >"$NSS_WRAPPER_GROUP"
        export LD_PRELOAD="$lib" NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
        return 0
    done
}

# Started as root (no USER in the pod spec): drop to the image's spark user.
as_spark() {
    if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid=spark --regid=spark --init-groups -- /usr/bin/tini -s -- "$@"
    fi
    exec /usr/bin/tini -s -- "$@"
}

spark_home="${SPARK_HOME:-/opt/spark}"
if [ -z "${JAVA_HOME:-}" ]; then
    JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
fi

# Class path of an executor: conf dir first (log4j2, spark-defaults), then the image's jars,
# the submission's extra jars, and the working directory (SPARK-43540).
classpath="${SPARK_CLASSPATH:-}:${spark_home}/jars/*"
[ -n "${SPARK_EXTRA_CLASSPATH:-}" ] && classpath="${classpath}:${SPARK_EXTRA_CLASSPATH}"
if [ -n "${HADOOP_HOME:-}" ] && [ -z "${SPARK_DIST_CLASSPATH:-}" ]; then
    SPARK_DIST_CLASSPATH="$("$HADOOP_HOME/bin/hadoop" classpath)"
    export SPARK_DIST_CLASSPATH
fi
[ -n "${HADOOP_CONF_DIR+set}" ] && classpath="${HADOOP_CONF_DIR}:${classpath}"
classpath="${SPARK_CONF_DIR:-${spark_home}/conf}:${classpath}:${PWD}"

# The driver passes executor JVM options as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ... in order.
java_opts=()
while IFS= read -r name; do
    java_opts+=("${!name}")
done < <(compgen -e | grep '^SPARK_JAVA_OPT_[0-9]*$' | sort -t_ -k4 -n)

[ -n "${PYSPARK_PYTHON+set}" ] && export PYSPARK_PYTHON
[ -n "${PYSPARK_DRIVER_PYTHON+set}" ] && export PYSPARK_DRIVER_PYTHON

case "${1:-}" in
    driver)
        shift
        provide_passwd_entry
        as_spark "${spark_home}/bin/spark-submit" \
            --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
            --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
            --deploy-mode client \
            "$@"
        ;;
    executor)
        shift
        provide_passwd_entry
        as_spark "${JAVA_HOME}/bin/java" \
            "${java_opts[@]}" \
            "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
            -cp "${classpath}:${SPARK_DIST_CLASSPATH:-}" \
            org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
            --driver-url "${SPARK_DRIVER_URL}" \
            --executor-id "${SPARK_EXECUTOR_ID}" \
            --cores "${SPARK_EXECUTOR_CORES}" \
            --app-id "${SPARK_APPLICATION_ID}" \
            --hostname "${SPARK_EXECUTOR_POD_IP}" \
            --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
            --podName "${SPARK_EXECUTOR_POD_NAME}"
        ;;
    *)
        exec "$@"
        ;;
esac
