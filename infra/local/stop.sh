#!/usr/bin/env bash
# Stop the local services started by start-s3.sh / start-mlflow.sh from their PID files.
#
#   infra/local/stop.sh [RUN_DIR] [SERVICE...]      SERVICE: s3 | mlflow (default: both)
#
# Each server was started as a process-group leader, so the whole group (server and its workers)
# gets SIGTERM, then SIGKILL after 10 s.
set -uo pipefail

run_dir="${1:-.local-services}"
shift || true
services=("$@")
[ ${#services[@]} -eq 0 ] && services=(mlflow s3)

for service in "${services[@]}"; do
    pid_file="$run_dir/$service.pid"
    [ -f "$pid_file" ] || continue
    pid="$(cat "$pid_file")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
done
