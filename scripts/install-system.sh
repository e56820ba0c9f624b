#!/usr/bin/env bash
# Installs one Debian package that some tests need, when its command is missing:
#   bash scripts/install-system.sh COMMAND PACKAGE PURPOSE
# (chromium for the report's browser tests, a Java 17 runtime for the Spark engine's tests). Needs root (CI runs as
# root); elsewhere it says what to do and leaves those tests to skip with that reason.
set -euo pipefail
command_name=$1
package=$2
purpose=$3
if command -v "$command_name" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "$command_name is not installed and this is not root: run 'sudo apt-get install $package' for $purpose" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "$package" >/dev/null
echo "installed $package: $(command -v "$command_name")"
