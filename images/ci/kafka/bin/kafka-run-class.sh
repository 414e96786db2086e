#!/usr/bin/env bash
# kafka-run-class.sh CLASS ARGS...: run a Kafka class on the image's jars, with the same
# environment knobs as Kafka's own script (KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS,
# KAFKA_OPTS, KAFKA_LOG4J_OPTS).
set -euo pipefail
home=/opt/kafka
log4j="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$home/config-default/log4j2.properties}"
# shellcheck disable=SC2086 # the *_OPTS variables are word lists, as in Kafka's script
exec "${JAVA_HOME:-/usr}/bin/java" ${KAFKA_HEAP_OPTS:--Xmx256M} \
    ${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true} \
    ${KAFKA_OPTS:-} $log4j -cp "$home/libs/*" "$@"
