#!/usr/bin/env bash
# Stop the local services started by start-s3.sh / start-mlflow.sh / start-postgres.sh from their PID files.
#
#   infra/local/stop.sh [RUN_DIR] [SERVICE...]      SERVICE: s3 | mlflow | postgres (default: all three)
#
# MLflow and S3 were started as process-group leaders, so the whole group (server and its workers)
# gets SIGTERM, then SIGKILL after 10 s. PostgreSQL gets SIGINT (its "fast" shutdown: it ends its own
# backends and does not wait for clients) and its data directory is deleted once it has stopped.
set -uo pipefail

run_dir="${1:-.local-services}"
shift || true
services=("$@")
[ ${#services[@]} -eq 0 ] && services=(mlflow s3 postgres)

for service in "${services[@]}"; do
    signal=TERM
    [ "$service" = postgres ] && signal=INT
    pid_file="$run_dir/$service.pid"
    if [ -f "$pid_file" ]; then
        pid="$(cat "$pid_file")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "-$signal" -- "-$pid" 2>/dev/null || kill "-$signal" "$pid" 2>/dev/null
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$pid_file"
    fi
    data_dir_file="$run_dir/$service.datadir"
    if [ -f "$data_dir_file" ]; then
        rm -rf -- "$(cat "$data_dir_file")"
        rm -f "$data_dir_file"
    fi
done
