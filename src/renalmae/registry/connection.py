"""Where MLflow lives (tracking / registry URI) and how its failures reach the user: one `ServiceError`.

The URI comes from params `tracking.tracking_uri`, else `MLFLOW_TRACKING_URI`, else the embedded
`sqlite:///mlflow.db` (artifacts in `mlruns/` beside the database file). A relative sqlite path is the
project's: it resolves against the folder of the params file, not the shell's working directory, and a
reader (`promote`, `predict`) never creates a database that does not exist. At scale `MLFLOW_TRACKING_URI`
points at an `mlflow server` (PostgreSQL + S3 artifacts). How long a request may take and how often it
is retried are MLflow's own settings (`MLFLOW_HTTP_REQUEST_TIMEOUT`, `MLFLOW_HTTP_REQUEST_MAX_RETRIES`,
`MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`); after the last retry the caller sees one `ServiceError`
naming the server and the fix, never a deep traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from renalmae.errors import ModelError, ServiceError
from renalmae.params import Params

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
INVALID_REQUEST_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}
ACCESS_CODES = {"UNAUTHENTICATED", "PERMISSION_DENIED"}


def tracking_uri(params: Params | None = None) -> str:
    """params `tracking.tracking_uri`, else `MLFLOW_TRACKING_URI`, else the embedded sqlite store; a
    relative sqlite path resolved against the params file's folder (`Params.project_dir`) when known."""
    configured = params.tracking.tracking_uri if params is not None else None
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    project_dir = params.project_dir if params is not None else None
    database = sqlite_path(uri)
    if database is None or database.is_absolute() or project_dir is None:
        return uri
    return "sqlite:///" + (project_dir / database).as_posix()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative as written), or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def require_store(uri: str) -> None:
    """Refuse to read a sqlite registry whose database file does not exist (MLflow would create an empty
    one and answer that no model exists)."""
    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        raise ModelError(
            f"no MLflow registry at {uri}: {database.absolute()} does not exist. Run this in the project "
            "that registered the models (pass its --params), or point tracking.tracking_uri / "
            "MLFLOW_TRACKING_URI at the registry; register models first with `renalmae register`"
        )


def actor() -> str:
    """Who acts on the store: the MLflow account in use (`MLFLOW_TRACKING_USERNAME` or
    ~/.mlflow/credentials, as MLflow reads them), else the operating-system user."""
    import getpass

    from mlflow.utils.credentials import read_mlflow_creds

    return read_mlflow_creds().username or getpass.getuser()


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: `mlruns/` beside an embedded sqlite database (MLflow's
    own default is ./mlruns of whatever the working directory happens to be); None (the server's
    default root) for a tracking server."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).absolute().parent / "mlruns").as_uri()


def mlflow_client(uri: str, read_only: bool = False):
    """An `MlflowClient` whose tracking and registry both live at `uri` (`read_only`: one that exists)."""
    from mlflow import MlflowClient

    if read_only:
        require_store(uri)
    with service_errors(uri):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _short(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redacted(uri: str) -> str:
    """`uri` with any password replaced by `***`, for messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _access_refused(uri: str, what: str, code: str) -> str:
    """The message for a server that refused who we are (401) or what we asked (403); never the secret."""
    from mlflow.utils.credentials import read_mlflow_creds

    user = read_mlflow_creds().username
    if code == "UNAUTHENTICATED":
        given = f"the password of user {user!r} is wrong" if user else "no credentials were given"
        return (
            f"{what} at {uri} requires authentication and refused this request: {given}; set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account of that server "
            "(docs/registry.md)"
        )
    return (
        f"{what} at {uri} refused the request: user {user!r} lacks the permission (403); ask the server's "
        "admin for EDIT (or MANAGE) on this model or experiment, or use an account that has it"
    )


@contextlib.contextmanager
def service_errors(uri: str, what: str = "MLflow") -> Iterator[None]:
    """Turn MLflow / HTTP / S3 failures inside the block into one `ServiceError` (or `ModelError`)."""
    from mlflow.exceptions import MlflowException

    uri = redacted(uri)
    try:
        yield
    except MlflowException as error:
        if error.error_code in ACCESS_CODES:
            raise ServiceError(_access_refused(uri, what, error.error_code)) from None
        unknown_alias = error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(error).lower()
        if error.error_code in NOT_FOUND_CODES or unknown_alias:
            raise ModelError(
                f"{what} at {uri}: {_short(error)}; check the model name, version or alias"
            ) from None
        if error.error_code in INVALID_REQUEST_CODES:  # it answered: the request itself was wrong
            raise ModelError(
                f"{what} at {uri} refused a value as invalid ({_short(error)}); fix the value it names "
                "(a registry.* setting, or the model name, version or alias given)"
            ) from None
        raise ServiceError(
            f"{what} at {uri} is unreachable or refused the request ({_short(error)}); start it "
            "(infra/local/start-mlflow.sh), or point MLFLOW_TRACKING_URI / tracking.tracking_uri "
            "at a running one"
        ) from None
    except ImportError as error:
        raise ServiceError(
            f"{what} at {uri}: the client library for this store is not installed ({error}); install it "
            "(e.g. psycopg for postgresql://) or use another tracking URI"
        ) from None
    except (ConnectionError, TimeoutError) as error:
        raise ServiceError(
            f"{what} at {uri}: a service is unreachable ({type(error).__name__}: {_short(error)}); "
            "check that the MLflow server and its artifact store (S3 endpoint) are running"
        ) from None
    except Exception as error:
        # requests / botocore / boto3 raise their own hierarchies for network and S3 failures.
        module = type(error).__module__.split(".")[0]
        if module in {"requests", "urllib3", "botocore", "boto3", "s3transfer"}:
            raise ServiceError(
                f"{what} at {uri}: the artifact store or server failed ({type(error).__name__}: "
                f"{_short(error)}); check that the MLflow server and its S3 endpoint are running"
            ) from None
        raise
