#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1: the MLflow backend store of the "at scale" setup.
#
#   POSTGRES_PASSWORD=... infra/local/start-postgres.sh [PORT] [RUN_DIR]
#
# The role and database are $POSTGRES_USER and $POSTGRES_DB (default `mlflow`, as in the Kubernetes
# PostgreSQL of infra/base/postgres.yaml); the password comes only from $POSTGRES_PASSWORD and is checked
# with scram-sha-256 over TCP. No Unix socket is opened. The cluster lives in a fresh directory
# (`initdb`), the server is started with `pg_ctl` and its PID written to RUN_DIR/postgres.pid;
# infra/local/stop.sh RUN_DIR postgres stops it by that PID and deletes the directory.
#
# PostgreSQL refuses to run as root: as root, the cluster is made and run by the unprivileged user
# $RENALMAE_PG_OS_USER (default: Debian's `postgres`, else `nobody`), in a directory under $TMPDIR
# that this user owns. Binaries: $PG_BINDIR, else the newest /usr/lib/postgresql/*/bin (Debian's
# `postgresql` package), else PATH. Prints the server's libpq URI (without the password).
set -euo pipefail

port="${1:-5432}"
run_dir="${2:-.local-services}"
timeout_s="${RENALMAE_START_TIMEOUT:-60}"
db_user="${POSTGRES_USER:-mlflow}"
db_name="${POSTGRES_DB:-mlflow}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "start-postgres.sh: set POSTGRES_PASSWORD (the password of role $db_user)" >&2
    exit 2
fi
mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"

bindir="${PG_BINDIR:-}"
if [ -z "$bindir" ]; then
    bindir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
fi
if [ -z "$bindir" ]; then
    bindir="$(dirname "$(command -v initdb || echo /nonexistent/initdb)")"
fi
if [ ! -x "$bindir/initdb" ] || [ ! -x "$bindir/pg_ctl" ]; then
    echo "start-postgres.sh: no initdb/pg_ctl found (install Debian's postgresql, or set PG_BINDIR)" >&2
    exit 1
fi

as_owner=()
data_dir="$(mktemp -d "${TMPDIR:-/tmp}/renalmae-postgres.XXXXXX")"
if [ "$(id -u)" -eq 0 ]; then
    os_user="${RENALMAE_PG_OS_USER:-}"
    if [ -z "$os_user" ]; then
        os_user=postgres
        id -u "$os_user" >/dev/null 2>&1 || os_user=nobody
    fi
    chown "$os_user:" "$data_dir"
    as_owner=(setpriv --reuid="$os_user" --regid="$(id -g "$os_user")" --init-groups --)
fi
echo "$data_dir" >"$run_dir/postgres.datadir"

password_file="$data_dir/initdb.pwfile"
(umask 077 && printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file")
[ ${#as_owner[@]} -eq 0 ] || chown "$os_user:" "$password_file"
"${as_owner[@]}" "$bindir/initdb" --pgdata="$data_dir/cluster" --username="$db_user" \
    --pwfile="$password_file" --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-sync \
    >"$run_dir/postgres-initdb.log" 2>&1 || {
    echo "start-postgres.sh: initdb failed; log follows" >&2
    cat "$run_dir/postgres-initdb.log" >&2
    exit 1
}
rm -f "$password_file"

# The server log goes into the data directory, which the unprivileged owner can write. The cluster is
# deleted when the server stops, so it skips fsync (much faster start, stop and commits on a busy disk).
if ! "${as_owner[@]}" "$bindir/pg_ctl" start --pgdata="$data_dir/cluster" --wait --timeout="$timeout_s" \
    --log="$data_dir/postgres.log" \
    --options="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='' -c fsync=off" >/dev/null; then
    echo "start-postgres.sh: the server did not start; log follows" >&2
    cat "$data_dir/postgres.log" >&2
    exit 1
fi
head -n 1 "$data_dir/cluster/postmaster.pid" >"$run_dir/postgres.pid"

PGPASSWORD="$POSTGRES_PASSWORD" "$bindir/createdb" --host=127.0.0.1 --port="$port" \
    --username="$db_user" "$db_name"
echo "postgresql://$db_user@127.0.0.1:$port/$db_name"
