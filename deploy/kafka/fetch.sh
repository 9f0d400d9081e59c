#!/usr/bin/env bash
# Resolve the Kafka broker's jars from Maven Central into deploy/kafka/lib (cached).
set -euo pipefail
cd "$(dirname "$0")"
if [ -f lib/.complete ] && [ lib/.complete -nt pom.xml ]; then exit 0; fi
command -v mvn >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq maven; }
rm -rf lib
mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime
touch lib/.complete
