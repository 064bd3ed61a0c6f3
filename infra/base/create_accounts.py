"""Create (or re-key) the pipeline's MLflow account; run as the admin by the renalmae-mlflow-accounts Job.

Environment: MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (the admin's, from
Secret renalmae-mlflow-server), PIPELINE_USERNAME / PIPELINE_PASSWORD (from Secret renalmae-mlflow).
Idempotent: an existing account gets the Secret's password. Prints no secret.
"""

import os
import sys
import time

import requests
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client


def main() -> int:
    accounts = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    user, password = os.environ["PIPELINE_USERNAME"], os.environ["PIPELINE_PASSWORD"]
    for _ in range(60):  # the server may still be starting
        try:
            accounts.create_user(user, password)
            print(f"created the MLflow account {user}")
            return 0
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            accounts.update_user_password(user, password)
            print(f"the MLflow account {user} exists; its password is the Secret's")
            return 0
        except requests.exceptions.ConnectionError:
            time.sleep(5)
    print("the MLflow server did not answer for 5 minutes", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
