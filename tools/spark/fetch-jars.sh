#!/usr/bin/env bash
# Fetch the Kafka connector and PostgreSQL JDBC jars the Spark jobs need (tools/spark/pom.xml)
# into ${STOREFLEET_JARS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/jars}/spark/, where
# storefleet.paths.jars_dir("spark") and the insights job look for them.
# Idempotent: when the folder already holds the jars of this pom (same checksum) it does nothing.
# Usage: tools/spark/fetch-jars.sh [--print-dir]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${STOREFLEET_JARS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/jars}/spark"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$dest"; exit 0; fi
stamp="$dest/.pom.sha256"
want="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && ls "$dest"/spark-sql-kafka-*.jar >/dev/null 2>&1; then
    echo "spark jars up to date in $dest"
    exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d "$dest/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$tmp"
find "$dest" -maxdepth 1 -name '*.jar' -delete
mv "$tmp"/*.jar "$dest"/
echo "$want" > "$stamp"
echo "spark jars fetched into $dest:"
ls "$dest"
