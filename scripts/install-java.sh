#!/usr/bin/env bash
# Installs a Java 17 runtime for the Spark engine's tests (pyspark starts a JVM). Needs root (CI runs as root);
# elsewhere it says what to do and leaves the Spark tests to skip with that reason.
set -euo pipefail
if command -v java >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "java is not installed and this is not root: run 'sudo apt-get install openjdk-17-jre-headless' for the Spark tests" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq openjdk-17-jre-headless >/dev/null
java -version
