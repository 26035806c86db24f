#!/usr/bin/env bash
# Builds a PostgreSQL 15 image without a registry: debootstrap a minimal
# Debian bookworm, install postgresql-15 into it, trim it, `docker import` the
# tree and add the image metadata with a `docker build` that only sets
# ENTRYPOINT/CMD/ENV/STOPSIGNAL (`docker import -c` rejects STOPSIGNAL).
#
# Usage: scripts/docker-postgres-image.sh [TAG]   (default workproof/postgres:15)
#
# The image behaves like the official postgres image where the harness and
# testcontainers-go's postgres module rely on it: the entrypoint honours
# POSTGRES_USER / PASSWORD / DB / INITDB_ARGS / HOST_AUTH_METHOD and PGDATA,
# runs /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz, and first starts a
# temporary socket-only server (so "ready to accept connections" is logged
# twice). One addition: a cluster made at build time (trust authentication,
# user and database postgres, C locale, 1 MB WAL segments) is copied into an
# empty PGDATA instead of running initdb when the environment asks for
# exactly that cluster (POSTGRES_HOST_AUTH_METHOD=trust, no other user,
# database, initdb arguments or init scripts), which is what package
# sim/pgenv asks for: a start then takes ~0.3 s instead of ~1.5 s.
#
# Cached: the image carries a label with the hash of this script, and an
# image under TAG with the same label is reused as it is. Needs root (for
# debootstrap and chroot), debootstrap, and a docker CLI that reaches an
# engine (DOCKER_HOST).
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:-workproof/postgres:15}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
recipe=$(sha256sum "$0" | cut -c1-16)

if [ "$(docker image inspect -f '{{index .Config.Labels "org.workproof.recipe"}}' "$tag" 2>/dev/null || true)" = "$recipe" ]; then
  echo "docker-postgres-image: $tag is up to date (recipe $recipe)"
  exit 0
fi

work=$(mktemp -d /tmp/wp-pgimage.XXXXXX)
root=$work/rootfs
cleanup() {
  # Nothing may stay mounted in the tree before it is removed.
  for m in "$root/proc" "$root/dev/pts" "$root/dev"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m"
  done
  rm -rf "$work"
}
trap cleanup EXIT

t0=$(date +%s)
echo "docker-postgres-image: debootstrap bookworm (minbase) from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log"; exit 1; }

# No service may start inside the chroot, and the package's own cluster is
# not wanted: the entrypoint makes one.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
mkdir -p "$root/etc/postgresql-common/createcluster.d"
echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.d/no-main.conf"
mount -t proc proc "$root/proc"
echo "docker-postgres-image: installing postgresql-15"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-15' >"$work/apt.log" 2>&1 ||
  { tail -20 "$work/apt.log"; exit 1; }

# The cluster the fast path copies (see above), made as the image's
# postgres user.
chroot "$root" /usr/bin/env -i PATH=/usr/lib/postgresql/15/bin:/usr/bin:/bin LC_ALL=C sh -e -c '
  mkdir -p /usr/share/workproof/pgdata /var/run/postgresql
  chown -R postgres:postgres /usr/share/workproof/pgdata /var/run/postgresql
  chmod 700 /usr/share/workproof/pgdata
  setpriv --reuid=postgres --regid=postgres --init-groups \
    initdb -D /usr/share/workproof/pgdata -U postgres --auth=trust -E UTF8 --locale=C --wal-segsize=1 --no-instructions >/dev/null
  echo "host all all all trust" >>/usr/share/workproof/pgdata/pg_hba.conf
  echo "listen_addresses = '\''*'\''" >>/usr/share/workproof/pgdata/postgresql.auto.conf
'
umount "$root/proc"
rm -f "$root/usr/sbin/policy-rc.d"

# Trim: documentation, translations, locale sources (C.UTF-8 is built in),
# apt's lists and caches, and the LLVM JIT with the solver only LLVM uses
# (Postgres runs without it; jit is then simply unavailable).
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/usr/share/i18n "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
  "$root"/var/cache/debconf/*-old "$root"/var/log/*.log \
  "$root"/usr/lib/postgresql/15/lib/llvmjit* "$root"/usr/lib/postgresql/15/lib/bitcode \
  "$root"/usr/lib/x86_64-linux-gnu/libLLVM* "$root"/usr/lib/llvm-* "$root"/usr/lib/x86_64-linux-gnu/libz3*
mkdir -p "$root/docker-entrypoint-initdb.d"

cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'ENTRYPOINT'
#!/bin/sh
# The official postgres image's entrypoint contract, in POSIX sh.
set -eu
case "${1:-}" in -*) set -- postgres "$@" ;; esac
[ "${1:-}" = postgres ] || exec "$@"
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  auth=${POSTGRES_HOST_AUTH_METHOD:-}
  scripts=$(ls /docker-entrypoint-initdb.d 2>/dev/null || true)
  if [ "$auth" = trust ] && [ "$user" = postgres ] && [ "$db" = postgres ] &&
     [ -z "${POSTGRES_INITDB_ARGS:-}" ] && [ -z "$scripts" ] && [ -d /usr/share/workproof/pgdata ]; then
    cp -a /usr/share/workproof/pgdata/. "$PGDATA"/
  else
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
      echo "error: database is uninitialized and POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
      exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words
    initdb --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
    rm -f "$pwfile"
    echo "host all all all ${auth:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.auto.conf"
    # A temporary server on the unix socket only, for the set-up.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
    export PGUSER="$user" PGPASSWORD="${POSTGRES_PASSWORD:-}" PGHOST=/var/run/postgresql PGPORT="${PGPORT:-5432}"
    if [ "$db" != postgres ]; then
      psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname postgres --set db="$db" -c 'CREATE DATABASE :"db"' >/dev/null
    fi
    for f in /docker-entrypoint-initdb.d/*; do
      [ -e "$f" ] || continue
      case "$f" in
        *.sh) echo "running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
        *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$db" -f "$f" ;;
        *.sql.gz) echo "running $f"; gzip -dc "$f" | psql -v ON_ERROR_STOP=1 --no-psqlrc --dbname "$db" ;;
        *) echo "ignoring $f" ;;
      esac
    done
    unset PGUSER PGPASSWORD PGHOST PGPORT
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL init process complete; ready for start up."
  fi
fi
exec "$@"
ENTRYPOINT
chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"

echo "docker-postgres-image: importing ($(du -sm "$root" | cut -f1) MB)"
tar -C "$root" -c . | docker import - "$tag-rootfs" >/dev/null
cat >"$work/Dockerfile" <<EOF
FROM $tag-rootfs
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
LABEL org.workproof.recipe=$recipe
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
EOF
# The legacy builder: BuildKit may not be there, and nothing is fetched.
DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$work" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; exit 1; }
docker rmi "$tag-rootfs" >/dev/null
# An image of an older recipe lost its tag to this one.
docker image prune -f --filter "label=org.workproof.recipe" >/dev/null
echo "docker-postgres-image: built $tag in $(($(date +%s) - t0)) s"
