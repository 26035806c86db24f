#!/usr/bin/env bash
# Starts or stops a private Docker engine that touches no network but
# loopback: no docker0 bridge, no iptables/NAT rules, no IP forwarding. Its
# socket, pid file and state are its own, so a system dockerd (if any) and
# other users of the machine are left alone; its image store persists under
# WORKPROOF_DOCKER_ROOT so a built image is cached between runs.
#
# Usage: scripts/dockerd-loopback.sh start   # prints DOCKER_HOST=unix://…
#        scripts/dockerd-loopback.sh stop    # removes every container, stops dockerd by PID
#
# Containers must use host networking (package sim/pgenv does, on 127.0.0.1).
set -euo pipefail

run=${WORKPROOF_DOCKER_RUN:-/run/wp-docker}
root=${WORKPROOF_DOCKER_ROOT:-/var/cache/workproof/docker}
sock=unix://$run/docker.sock
pidfile=$run/dockerd.pid
export DOCKER_HOST=$sock

running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
start)
  if running; then
    echo "DOCKER_HOST=$sock"
    exit 0
  fi
  mkdir -p "$run" "$root"
  dockerd --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
    --host "$sock" --pidfile "$pidfile" --data-root "$root" --exec-root "$run/exec" \
    >"$run/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 300); do
    if docker version >/dev/null 2>&1; then
      echo "DOCKER_HOST=$sock"
      exit 0
    fi
    if ! kill -0 $! 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "dockerd-loopback: dockerd did not answer on $sock; its log:" >&2
  tail -20 "$run/dockerd.log" >&2
  exit 1
  ;;
stop)
  if ! running; then
    exit 0
  fi
  ids=$(docker ps -aq 2>/dev/null || true)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086 # one id per word
    docker rm -f -v $ids >/dev/null
  fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "dockerd-loopback: dockerd $pid did not stop in 30 s; killing it" >&2
    kill -KILL "$pid"
  fi
  # dockerd leaves its bind mount of the host's network namespace behind.
  awk -v run="$run/" 'index($2, run) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  rm -rf "$run"
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
