"""The error tree: codes, statuses, retryability, pickling, and secrets kept out of messages."""

from __future__ import annotations

import pickle

import pytest

import deployflow
from deployflow import errors
from deployflow.redaction import MASK, redact, register_secret


def test_every_error_is_a_deployment_error_and_exported():
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, errors.DeploymentError)
            assert getattr(deployflow, name) is obj


@pytest.mark.parametrize(
    "status, cls, code, retryable",
    [
        (400, errors.InvalidInputError, "BAD_REQUEST", False),
        (401, errors.AuthenticationError, "UNAUTHENTICATED", False),
        (403, errors.AuthenticationError, "PERMISSION_DENIED", False),
        (404, errors.NotFoundError, "RESOURCE_DOES_NOT_EXIST", False),
        (409, errors.ConflictError, "RESOURCE_ALREADY_EXISTS", False),
        (429, errors.TransientError, "REQUEST_LIMIT_EXCEEDED", True),
        (500, errors.TransientError, "INTERNAL_ERROR", True),
        (502, errors.TransientError, "TEMPORARILY_UNAVAILABLE", True),
        (503, errors.TransientError, "TEMPORARILY_UNAVAILABLE", True),
        (504, errors.RequestTimeoutError, "DEADLINE_EXCEEDED", True),
        (418, errors.RemoteError, "INTERNAL_ERROR", False),
    ],
)
def test_error_for_status(status, cls, code, retryable):
    error = errors.error_for_status(status, "it went wrong", body='{"x": 1}', retry_after=2.0)
    assert type(error) is cls
    assert error.status_code == status
    assert error.error_code == code
    assert error.retryable is retryable
    assert error.body == '{"x": 1}'


def test_service_error_code_refines_the_class():
    error = errors.error_for_status(400, "exists", error_code="RESOURCE_ALREADY_EXISTS")
    assert type(error) is errors.ConflictError  # Databricks answers a duplicate create with 400
    error = errors.error_for_status(400, "odd", error_code="SOMETHING_NEW")
    assert type(error) is errors.InvalidInputError and error.error_code == "SOMETHING_NEW"
    error = errors.error_for_status(412, "exists", error_code="RESOURCE_ALREADY_EXISTS")
    assert type(error) is errors.ConflictError
    assert error.error_code == "RESOURCE_ALREADY_EXISTS"
    # A retryable status stays retryable whatever the body claims.
    error = errors.error_for_status(503, "busy", error_code="INVALID_PARAMETER_VALUE")
    assert error.retryable and isinstance(error, errors.TransientError)


def test_errors_pickle_with_their_attributes():
    original = errors.TransientError("slow down", status_code=429, error_code="REQUEST_LIMIT_EXCEEDED", retry_after=3)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is errors.TransientError
    assert (copy.message, copy.status_code, copy.error_code, copy.retryable, copy.retry_after) == (
        "slow down",
        429,
        "REQUEST_LIMIT_EXCEEDED",
        True,
        3,
    )
    failed = pickle.loads(pickle.dumps(errors.DeploymentFailedError("failed", reason="oom")))
    assert failed.reason == "oom"


def test_repr_is_informative():
    text = repr(errors.NotFoundError("no such endpoint", status_code=404))
    assert text == "NotFoundError('no such endpoint', error_code='RESOURCE_DOES_NOT_EXIST', status_code=404)"


def test_not_supported_is_also_not_implemented():
    assert issubclass(errors.NotSupportedError, NotImplementedError)


def test_messages_and_bodies_are_redacted():
    register_secret("s3cr3t-token-value")
    error = errors.RemoteError(
        "call failed with token s3cr3t-token-value", body='{"echo": "Bearer abcdefghijkl"}'
    )
    assert "s3cr3t-token-value" not in str(error) and MASK in str(error)
    assert "abcdefghijkl" not in error.body
    assert "s3cr3t-token-value" not in repr(error)


@pytest.mark.parametrize(
    "text, secret",
    [
        ("Authorization: Bearer abc.def.ghi123", "abc.def.ghi123"),
        ("headers={'Authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz"),
        ("token=verysecretvalue&x=1", "verysecretvalue"),
        ('{"api_key": "k-123456789"}', "k-123456789"),
        ("password: hunter22", "hunter22"),
        ("dapi0123456789abcdef0123456789abcdef", "dapi0123456789abcdef0123456789abcdef"),
        ("sk-proj-ABCDEFGHIJKLMNOPQRSTUV", "sk-proj-ABCDEFGHIJKLMNOPQRSTUV"),
        ("https://user:pa55word@host/path", "pa55word"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI/K7MDENG"),
    ],
)
def test_credential_shapes_are_masked_without_registration(text, secret):
    assert secret not in redact(text)


def test_short_values_are_not_registered():
    register_secret("abc")  # would mask ordinary words
    assert redact("abcdef") == "abcdef"


def test_raise_as_read_raises_the_reading_chained_or_the_error_itself():
    original = errors.InvalidInputError("Model m is not ready yet.", status_code=400)

    def as_transient(error):
        return errors.TransientError(error.message, status_code=error.status_code, retryable=True)

    with pytest.raises(errors.TransientError) as raised:
        errors.raise_as_read(original, as_transient)
    assert raised.value.__cause__ is original and raised.value.retryable
    with pytest.raises(errors.InvalidInputError) as kept:
        errors.raise_as_read(original, lambda error: error)
    assert kept.value is original
