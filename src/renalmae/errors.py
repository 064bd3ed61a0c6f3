"""Errors a user can cause: each names the thing that is wrong and how to fix it.

The CLI prints the message of a `RenalMAEError` and exits non-zero without a traceback; any other
exception is a bug and keeps its traceback.
"""


class RenalMAEError(Exception):
    """Base class of every error a user can cause (bad params, bad data, missing service, wrong URI)."""

    exit_code = 2


class ParamsError(RenalMAEError):
    """`params.yaml` (or a params file given on the command line) is invalid."""


class DataError(RenalMAEError):
    """Input data breaks the data contract (unreadable file, unknown label, leakage, ...)."""


class DataValidationError(DataError):
    """The data validation suite failed; the message summarises the failed rules and example files."""


class ModelError(RenalMAEError):
    """A model cannot be built or loaded (unknown name, incompatible checkpoint, ...)."""


class ServiceError(RenalMAEError):
    """An external service (MLflow server, S3 endpoint, KFP API) is unreachable or refuses a request."""


class GateError(RenalMAEError):
    """A promotion gate failed: the registry is left unchanged."""
