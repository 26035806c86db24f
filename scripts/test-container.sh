#!/usr/bin/env bash
# Postgres in containers, end to end (make test-container; .ci/run calls it):
#
#  1. installs docker.io and debootstrap when missing;
#  2. starts a private dockerd bound to nothing but loopback
#     (scripts/dockerd-loopback.sh: no bridge, no iptables, no forwarding);
#  3. builds the local PostgreSQL image (scripts/docker-postgres-image.sh;
#     cached between runs on the same machine);
#  4. runs package pgenv's tests with WORKPROOF_POSTGRES=container (the
#     built-in engine: conformance, restart, sweep of a killed run's
#     container) and one Verify family on a container;
#  5. runs module sim/pgenv/pgcontainer's tests (testcontainers-go: the same
#     conformance test and a Verify family);
#  6. runs the tests of packages work, kvx and sim with the PostgreSQL
#     binaries hidden (a private mount namespace with an empty
#     /usr/lib/postgresql), so they find Postgres in a container by the
#     resolution order alone (pgenvtest, the path every package's tests
#     take). Not all of make test: it ran first, on the binaries, and twice
#     did not fit CI's 20 minutes;
#  7. stops dockerd by PID, leaving no container, process or temp dir.
#
# Needs root (apt-get, dockerd, debootstrap, unshare).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test-container: needs root (dockerd, debootstrap, mount namespaces)" >&2
  exit 2
fi

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "test-container: installing docker.io and debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  # Installing must not start the system's docker service: a plain dockerd
  # makes a bridge and NAT rules.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

echo "test-container: [${SECONDS}s] starting a loopback-only dockerd"
eval "export $(scripts/dockerd-loopback.sh start)"
trap 'scripts/dockerd-loopback.sh stop' EXIT

image=workproof/postgres:15
scripts/docker-postgres-image.sh "$image"

export WORKPROOF_PG_IMAGE=$image
# testcontainers-go here: Ryuk cannot be pulled (pgenv sweeps killed runs'
# containers itself), and the engine has no bridge network.
export TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_PROVIDER=workproof-host TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1

echo "test-container: [${SECONDS}s] package pgenv and a Verify family on the built-in engine"
WORKPROOF_POSTGRES=container go test -race -count=1 -timeout 5m ./sim/pgenv/...
WORKPROOF_POSTGRES=container go test -race -count=1 -timeout 5m -run '^TestVerifyReference$/^crash$' ./scenarios/

echo "test-container: [${SECONDS}s] module sim/pgenv/pgcontainer (testcontainers-go)"
(cd sim/pgenv/pgcontainer && go vet ./... && WORKPROOF_POSTGRES=container go test -race -count=1 -timeout 5m ./...)

echo "test-container: [${SECONDS}s] packages work, kvx and sim with the PostgreSQL binaries hidden"
unshare --mount --propagation private sh -c '
  mount -t tmpfs -o size=1m,mode=755 tmpfs /usr/lib/postgresql
  if command -v initdb >/dev/null && [ -x "$(command -v initdb)" ]; then echo "initdb still visible" >&2; exit 1; fi
  exec go test -race -count=1 -timeout 5m ./work/ ./kvx/ ./sim/
'

left=$(docker ps -aq)
if [ -n "$left" ]; then
  echo "test-container: containers left behind: $left" >&2
  exit 1
fi
echo "test-container: ok in ${SECONDS}s"
