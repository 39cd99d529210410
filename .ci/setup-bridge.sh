#!/usr/bin/env bash
# The bridge's two-host tests (bridge/tests/netns.rs) need `ip` (iproute2)
# to create network namespaces and a veth pair. Idempotent; fast when present.
set -euo pipefail
if ! command -v ip >/dev/null 2>&1; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y iproute2
fi
ip -V
