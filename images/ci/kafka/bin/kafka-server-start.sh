#!/usr/bin/env bash
# kafka-server-start.sh server.properties: the broker in the foreground (1 GiB heap by default).
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}"
exec "$(dirname "$0")/kafka-run-class.sh" kafka.Kafka "$@"
