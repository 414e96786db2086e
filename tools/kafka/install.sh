#!/usr/bin/env bash
# Fetch the Kafka broker's jars from Maven Central into the StoreFleet cache (idempotent).
# Reads tools/kafka/pom.xml; writes ${STOREFLEET_JARS_DIR:-$XDG_CACHE_HOME/storefleet/jars}/kafka/<version>/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
jars="${STOREFLEET_JARS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefleet/jars}/kafka/$version"
if [ -f "$jars/.complete" ]; then
  exit 0
fi
rm -rf "$jars.partial"
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$jars.partial"
touch "$jars.partial/.complete"
rm -rf "$jars"
mv "$jars.partial" "$jars"
echo "Kafka $version jars in $jars"
