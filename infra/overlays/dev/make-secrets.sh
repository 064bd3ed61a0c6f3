#!/usr/bin/env bash
# Write the dev overlay's Secret files (secrets/*.env, ignored by git) with fresh random values; a file that
# exists is kept, so re-running never changes a password the cluster already uses. Prints file names only.
#
#   infra/overlays/dev/make-secrets.sh && kubectl apply -k infra/overlays/dev
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets
umask 077

random() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

write() {  # FILE KEY=VALUE...
    local file="secrets/$1"
    shift
    if [ -e "$file" ]; then
        echo "kept    $file"
        return
    fi
    printf '%s\n' "$@" >"$file"
    echo "written $file"
}

write postgres.env "POSTGRES_PASSWORD=$(random)"
write mlflow-server.env "MLFLOW_AUTH_ADMIN_USERNAME=admin" "MLFLOW_AUTH_ADMIN_PASSWORD=$(random)" \
    "MLFLOW_FLASK_SERVER_SECRET_KEY=$(random)"
write mlflow-pipeline.env "MLFLOW_TRACKING_USERNAME=pipeline" "MLFLOW_TRACKING_PASSWORD=$(random)"
write minio-user.env "AWS_ACCESS_KEY_ID=renalmae" "AWS_SECRET_ACCESS_KEY=$(random)"
write minio-root.env "MINIO_ROOT_USER=root-$(random | head -c 8)" "MINIO_ROOT_PASSWORD=$(random)"
