"""botocore's errors, translated once into deployflow's error tree.

:func:`translate` is the only place where an exception from boto3 or botocore becomes a
:class:`~deployflow.errors.DeploymentError` (every AWS call goes through
:meth:`~deployflow.targets.sagemaker.connection.AwsConnection.call`, which calls it). The choice:

=========================================================  ============================================
what AWS answered                                          error
=========================================================  ============================================
ThrottlingException and the other throttling codes, 429    TransientError (retryable)
HTTP 5xx (InternalFailure, ServiceUnavailable, ...)        TransientError (retryable)
a missing endpoint, model, config, bucket or key           NotFoundError
ValidationException / ValidationError otherwise, any 400   InvalidInputError
"already existing" resources, ResourceInUse, HTTP 409      ConflictError
ModelError: the model answered 4xx / anything else         InvalidInputError / RemoteError
401, 403, unknown or expired credentials, AccessDenied     AuthenticationError
no credentials anywhere                                    AuthenticationError saying where to put them
no connection, connect timeout, dropped connection         TransientError (retryable)
read timeout                                               RequestTimeoutError
bad parameters (ParamValidationError), unknown profile     InvalidInputError
anything else                                              RemoteError
=========================================================  ============================================

An error translated from an AWS answer keeps AWS's code in ``aws_code``. Messages name the AWS
operation and quote AWS's code and message; they pass through deployflow's redaction like every
error, and the client registers its credentials for it, so none shows.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import (
    AuthenticationError,
    ConflictError,
    DeploymentError,
    InvalidInputError,
    NotFoundError,
    RemoteError,
    RequestTimeoutError,
    TransientError,
)
from ...retry import Failure

__all__ = ["translate", "CREDENTIALS_HELP", "THROTTLING_CODES"]

#: Where the client looks for credentials, as an error tells the user.
CREDENTIALS_HELP = (
    "pass the options aws_access_key_id and aws_secret_access_key (and aws_session_token for temporary "
    "credentials) or profile_name, or configure the standard AWS chain (AWS_ACCESS_KEY_ID / "
    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/credentials, or an instance or container role)"
)

#: Error codes AWS uses for "slow down" (botocore's standard retry mode retries the same ones).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "ModelNotReadyException",
    }
)
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "MissingAuthenticationToken",
        "AuthFailure",
        "NotAuthorized",
    }
)
_NOT_FOUND_CODES = frozenset({"ResourceNotFound", "NoSuchBucket", "NoSuchKey", "NoSuchEntity", "NotFound", "404"})
_VALIDATION_CODES = frozenset({"ValidationException", "ValidationError", "InvalidParameterValue", "InvalidRequest"})
_CONFLICT_CODES = frozenset({"ResourceInUse", "ConflictException", "BucketAlreadyExists", "OperationAborted"})
# SageMaker says "Could not find endpoint ...", the runtime "Endpoint x of account y not found."
_MISSING = re.compile(r"(?i)\bcould not find\b|\bnot found\b|\bdoes not exist\b")
_EXISTS = re.compile(r"(?i)already exist")


def translate(exc: BaseException, *, action: str) -> DeploymentError:
    """The deployflow error for ``exc``, raised by the AWS call ``action`` ("SageMaker DescribeEndpoint").

    ``exc`` is a botocore or boto3 exception; anything else becomes a :class:`RemoteError`.
    """
    from botocore import exceptions as boto

    if isinstance(exc, boto.ClientError):
        return _from_answer(exc.response or {}, action)
    if isinstance(exc, (boto.NoCredentialsError, boto.PartialCredentialsError)):
        return AuthenticationError(f"{action}: no usable AWS credentials were found ({exc}); {CREDENTIALS_HELP}")
    if isinstance(exc, boto.ProfileNotFound):
        return InvalidInputError(f"{action}: {exc}; profiles live in ~/.aws/config and ~/.aws/credentials")
    if isinstance(exc, boto.NoRegionError):
        return InvalidInputError(f"{action}: no AWS region: use the URI sagemaker:/<region> or the option region_name")
    if isinstance(exc, boto.ParamValidationError):
        return InvalidInputError(f"{action}: {exc}")
    if isinstance(exc, boto.ConnectTimeoutError):
        return _transient(f"{action}: connecting timed out ({exc})", Failure.CONNECT_TIMEOUT)
    if isinstance(exc, boto.ReadTimeoutError):
        error = RequestTimeoutError(f"{action}: no answer in time ({exc})")
        error.failure = Failure.READ_TIMEOUT
        return error
    if isinstance(exc, boto.SSLError):
        return RemoteError(f"{action}: TLS failed ({exc})")
    if isinstance(exc, boto.ConnectionError):  # refused, unreachable, name not found, proxy refused
        return _transient(f"{action}: could not connect ({exc})", Failure.CONNECT)
    if isinstance(exc, boto.HTTPClientError):  # the connection broke after the request went out
        return _transient(f"{action}: the connection failed ({exc})", Failure.DROPPED)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and isinstance(cause, boto.ClientError):
        return translate(cause, action=action)  # boto3's S3 transfer errors wrap AWS's answer
    return RemoteError(f"{action} failed: {type(exc).__name__}: {exc}")


def _transient(message: str, failure: Failure) -> TransientError:
    error = TransientError(message)
    error.failure = failure
    return error


def _from_answer(answer: dict[str, Any], action: str) -> DeploymentError:
    error = _classify(answer, action)
    #: AWS's own error code ("ValidationException", "NoSuchBucket", ...), for callers that need it.
    error.aws_code = str((answer.get("Error") or {}).get("Code") or "")  # type: ignore[attr-defined]
    return error


def _classify(answer: dict[str, Any], action: str) -> DeploymentError:
    details = answer.get("Error") or {}
    code = str(details.get("Code") or "")
    message = str(details.get("Message") or "").strip() or "no message"
    status = (answer.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    status = int(status) if isinstance(status, int) or str(status).isdigit() else None
    text = f"{action} failed: {code or 'error'} (HTTP {status}): {message}" if status else f"{action} failed: {code}: {message}"
    if code == "ModelError":
        return _model_error(answer, action, message)
    if code in THROTTLING_CODES or status == 429:
        return TransientError(text, error_code="REQUEST_LIMIT_EXCEEDED", status_code=429)
    if status is not None and status >= 500:
        return TransientError(text, error_code="TEMPORARILY_UNAVAILABLE", status_code=status)
    if code in _AUTH_CODES or status in (401, 403):
        return AuthenticationError(text, status_code=status)
    if code in _NOT_FOUND_CODES or status == 404 or (code in _VALIDATION_CODES and _MISSING.search(message)):
        return NotFoundError(text, status_code=status)
    if code in _CONFLICT_CODES or status == 409 or _EXISTS.search(message):
        return ConflictError(text, status_code=status)
    if code in _VALIDATION_CODES or status == 400:
        return InvalidInputError(text, status_code=status)
    return RemoteError(text, error_code=code or None, status_code=status)


def _model_error(answer: dict[str, Any], action: str, message: str) -> DeploymentError:
    """SageMaker's ModelError: the model container answered with an error status of its own."""
    original = answer.get("OriginalStatusCode")
    detail = str(answer.get("OriginalMessage") or message).strip()
    try:
        status = int(original) if original is not None else None
    except (TypeError, ValueError):
        status = None
    text = f"{action}: the model answered HTTP {status if status is not None else '?'}: {detail}"
    if status is not None and 400 <= status < 500:
        return InvalidInputError(text, status_code=status)
    return RemoteError(text, error_code="MODEL_ERROR", status_code=status)
