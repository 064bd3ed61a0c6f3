#!/usr/bin/env bash
# Start a local S3 endpoint (moto) on 127.0.0.1 for the MLflow artifact store and the DVC remote.
#
#   infra/local/start-s3.sh [PORT] [RUN_DIR]
#
# PORT defaults to 9000 and RUN_DIR (PID file, log) to .local-services/. Waits until the endpoint
# answers (at most $RENALMAE_START_TIMEOUT seconds, default 60), then prints its URL. Stop with
# infra/local/stop.sh RUN_DIR. Data lives in memory: it is gone when the server stops.
set -euo pipefail

port="${1:-9000}"
run_dir="${2:-.local-services}"
timeout_s="${RENALMAE_START_TIMEOUT:-60}"
moto_server="${MOTO_SERVER:-moto_server}"
mkdir -p "$run_dir"

# setsid: the server leads its own process group, so stop.sh can end it and its children together.
setsid "$moto_server" -H 127.0.0.1 -p "$port" >"$run_dir/s3.log" 2>&1 &
echo $! >"$run_dir/s3.pid"

url="http://127.0.0.1:$port"
for _ in $(seq 1 "$((timeout_s * 5))"); do
    if curl -fs -o /dev/null "$url/moto-api/"; then
        echo "$url"
        exit 0
    fi
    if ! kill -0 "$(cat "$run_dir/s3.pid")" 2>/dev/null; then
        echo "start-s3.sh: moto_server exited; log follows" >&2
        cat "$run_dir/s3.log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "start-s3.sh: $url did not answer within ${timeout_s}s; see $run_dir/s3.log" >&2
exit 1
