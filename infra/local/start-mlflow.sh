#!/usr/bin/env bash
# Start a local MLflow tracking + registry server with S3 artifacts and a sqlite or PostgreSQL backend.
#
#   infra/local/start-mlflow.sh [PORT] [S3_ENDPOINT_URL] [BUCKET] [RUN_DIR] [BACKEND_STORE_URI]
#
# Defaults: port 5000, S3 at http://127.0.0.1:9000 (infra/local/start-s3.sh), bucket `mlflow`,
# RUN_DIR .local-services/ (PID file, log), backend sqlite:///RUN_DIR/mlflow.db. For PostgreSQL
# (infra/local/start-postgres.sh) pass postgresql+psycopg://USER@127.0.0.1:PORT/DB and export
# PGPASSWORD, as the Kubernetes Deployment does: the password never appears on the command line.
# The bucket must exist. The server proxies artifacts (clients never talk to S3 directly) and stores
# them under s3://BUCKET/mlflow. AWS credentials come from the caller's environment (any non-empty
# values work against moto).
# Authentication: when MLFLOW_AUTH_ADMIN_PASSWORD is set, the server runs MLflow's basic-auth app
# (`--app-name basic-auth`, as infra/base does): the admin account is MLFLOW_AUTH_ADMIN_USERNAME
# (default admin) with that password, created on first start; other accounts are made by the admin
# (REST API or `mlflow.server.get_app_client("basic-auth", URL)`), and accounts without a grant may only
# read (default_permission READ). Accounts live in $MLFLOW_AUTH_DATABASE_URI (default
# sqlite:///RUN_DIR/basic_auth.db; a PostgreSQL URI takes its password from PGPASSWORD, like the
# backend). MLFLOW_FLASK_SERVER_SECRET_KEY signs the app's CSRF tokens (a random one when unset).
# Credentials live only in the environment: never on the command line, in the log or in a file here.
# Waits for /health (at most $RENALMAE_START_TIMEOUT seconds, default 90) and prints the URL.
set -euo pipefail

port="${1:-5000}"
s3_endpoint="${2:-http://127.0.0.1:9000}"
bucket="${3:-mlflow}"
run_dir="${4:-.local-services}"
backend_store_uri="${5:-}"
timeout_s="${RENALMAE_START_TIMEOUT:-90}"
mlflow_bin="${MLFLOW_BIN:-mlflow}"
mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"
backend_store_uri="${backend_store_uri:-sqlite:///$run_dir/mlflow.db}"

export MLFLOW_S3_ENDPOINT_URL="$s3_endpoint"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

app=()
if [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]; then
    export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
    export MLFLOW_AUTH_CONFIG_PATH="$run_dir/basic_auth.ini"
    if [ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]; then
        MLFLOW_FLASK_SERVER_SECRET_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        export MLFLOW_FLASK_SERVER_SECRET_KEY
    fi
    printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = %s\nauthorization_function = %s\n' \
        "${MLFLOW_AUTH_DATABASE_URI:-sqlite:///$run_dir/basic_auth.db}" \
        "mlflow.server.auth:authenticate_request_basic_auth" >"$MLFLOW_AUTH_CONFIG_PATH"
    app=(--app-name basic-auth)
fi

setsid "$mlflow_bin" server "${app[@]}" \
    --backend-store-uri "$backend_store_uri" \
    --artifacts-destination "s3://$bucket/mlflow" \
    --host 127.0.0.1 --port "$port" --workers 1 \
    >"$run_dir/mlflow.log" 2>&1 &
echo $! >"$run_dir/mlflow.pid"

url="http://127.0.0.1:$port"
for _ in $(seq 1 "$((timeout_s * 5))"); do
    if curl -fs -o /dev/null "$url/health"; then
        echo "$url"
        exit 0
    fi
    if ! kill -0 "$(cat "$run_dir/mlflow.pid")" 2>/dev/null; then
        echo "start-mlflow.sh: mlflow server exited; log follows" >&2
        cat "$run_dir/mlflow.log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "start-mlflow.sh: $url did not answer within ${timeout_s}s; see $run_dir/mlflow.log" >&2
exit 1
