"""The AWS side of a sagemaker client: its target URI, its one boto3 session, the service clients made from
that session, and :meth:`AwsConnection.call`, the one place where an AWS call is made.

Target URIs, as MLflow reads them: ``sagemaker`` (region from the options or the AWS chain),
``sagemaker:/<region>`` and ``sagemaker:/<region>/<role-arn>`` (a role to assume for every call). A role
ARN without a region, a region that is not one (``sagemaker:/arn:...``, ``sagemaker:/US East``) and the
two-slash form ``sagemaker://<region>`` (which MLflow quietly reads as "no region") are refused.

Credentials come from the options (``aws_access_key_id`` + ``aws_secret_access_key`` [+
``aws_session_token``], or ``profile_name``), else from boto3's standard chain (environment, shared
files, instance or container role). One :class:`boto3.Session` per client holds them; with a role to
assume, that session holds refreshing credentials of the role (asked of STS when first needed and again
before they expire), so a wait longer than the role's session still works. Every credential found is
registered for redaction.

Each call goes through :meth:`AwsConnection.call`: boto3's own retries (``standard`` mode) with
``max_attempts`` set from the client's ``max_retries``, connect and read timeouts from its HTTP
settings, and, inside a :func:`deployflow.retry.operation` scope, the scope's budget: a call does not
start once the scope's deadline has passed, its read timeout is clipped to the time left (rounded up
to a power of two seconds, at least 1 s), its attempts are limited to those left, and the attempts it
made (``ResponseMetadata.RetryAttempts`` + 1) are counted against the scope. Errors are translated by
:func:`~deployflow.targets.sagemaker.faults.translate`.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from ...errors import InvalidInputError, RequestTimeoutError, TargetError, TransientError
from ...redaction import Secret, get_logger, redact, register_secret, reveal
from ...retry import current_budget
from ...transport import HttpSettings
from .faults import translate

__all__ = ["SageMakerURI", "parse_target_uri", "AwsConnection", "DEFAULT_REGION", "SERVICES"]

logger = get_logger(__name__)

#: The region when neither the URI, the options nor the AWS chain name one (MLflow's default).
DEFAULT_REGION = "us-west-2"
#: The AWS services the client talks to; ``endpoint_url`` may name one URL for each.
SERVICES = ("sagemaker", "sagemaker-runtime", "s3", "sts", "iam")
_SERVICE_TITLES = {"sagemaker": "SageMaker", "sagemaker-runtime": "SageMaker Runtime", "s3": "S3", "sts": "STS", "iam": "IAM"}
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
_CLIENT_CACHE_SIZE = 32


@dataclass(frozen=True)
class SageMakerURI:
    """What a ``sagemaker`` target URI says: a region and a role to assume, each possibly ``None``."""

    region: str | None = None
    assume_role_arn: str | None = None


def parse_target_uri(target_uri: str) -> SageMakerURI:
    """Read ``sagemaker``, ``sagemaker:/<region>`` or ``sagemaker:/<region>/<role-arn>``.

    >>> parse_target_uri("sagemaker:/eu-west-1/arn:aws:iam::123456789012:role/deployer")
    SageMakerURI(region='eu-west-1', assume_role_arn='arn:aws:iam::123456789012:role/deployer')
    """
    parsed = urlparse(target_uri.strip())
    if parsed.netloc:
        raise TargetError(
            f"{redact(repr(target_uri))}: write the region after one slash, as in 'sagemaker:/{parsed.netloc}' "
            "('sagemaker://<region>' would read as no region at all)"
        )
    if not parsed.scheme:
        return SageMakerURI()
    rest = parsed.path.strip("/")
    if not rest:
        return SageMakerURI()
    region, _, role = rest.partition("/")
    role = role.strip("/")
    if region.startswith("arn"):
        raise TargetError(
            f"{redact(repr(target_uri))} names a role without a region; use 'sagemaker:/<region>/<role-arn>'"
        )
    if not _REGION.match(region):
        raise TargetError(f"{redact(repr(target_uri))}: {region!r} is not an AWS region name such as 'us-east-1'")
    if role and not _ROLE_ARN.match(role):
        raise TargetError(
            f"{redact(repr(target_uri))}: {role!r} is not an IAM role ARN such as "
            "'arn:aws:iam::123456789012:role/name'"
        )
    return SageMakerURI(region=region, assume_role_arn=role or None)


class AwsConnection:
    """One boto3 session and the service clients made from it, for one deployflow client.

    Nothing is imported or asked of AWS until the first call. Thread-safe.
    """

    def __init__(
        self,
        uri: SageMakerURI,
        *,
        settings: HttpSettings,
        region_name: str | None = None,
        aws_access_key_id: Any = None,
        aws_secret_access_key: Any = None,
        aws_session_token: Any = None,
        profile_name: str | None = None,
        endpoint_url: Any = None,
        assume_role_arn: str | None = None,
    ) -> None:
        if region_name is not None:
            if not isinstance(region_name, str) or not _REGION.match(region_name.strip()):
                raise InvalidInputError(f"region_name must be an AWS region name such as 'us-east-1', got {region_name!r}")
            region_name = region_name.strip()
            if uri.region and uri.region != region_name:
                raise InvalidInputError(
                    f"The target URI names region {uri.region!r} and the option region_name {region_name!r}; give one"
                )
        if assume_role_arn is not None:
            if not isinstance(assume_role_arn, str) or not _ROLE_ARN.match(assume_role_arn.strip()):
                raise InvalidInputError(
                    f"assume_role_arn must be an IAM role ARN such as 'arn:aws:iam::123456789012:role/name', "
                    f"got {assume_role_arn!r}"
                )
            assume_role_arn = assume_role_arn.strip()
            if uri.assume_role_arn and uri.assume_role_arn != assume_role_arn:
                raise InvalidInputError("The target URI and the option assume_role_arn name different roles; give one")
        keys = {"aws_access_key_id": aws_access_key_id, "aws_secret_access_key": aws_secret_access_key}
        given = [name for name, value in keys.items() if value]
        if len(given) == 1:
            missing = next(name for name in keys if name not in given)
            raise InvalidInputError(f"The option {given[0]} was given without {missing}; give both, or neither")
        if aws_session_token and not given:
            raise InvalidInputError("aws_session_token goes with aws_access_key_id and aws_secret_access_key")
        if given and profile_name:
            raise InvalidInputError("Give access keys or profile_name, not both")
        if profile_name is not None and (not isinstance(profile_name, str) or not profile_name.strip()):
            raise InvalidInputError(f"profile_name must be a profile's name, got {profile_name!r}")
        self.settings = settings
        self.endpoint_urls = _endpoint_urls(endpoint_url)
        self.assume_role_arn = uri.assume_role_arn or assume_role_arn
        self._explicit_region = uri.region or region_name
        self._credentials = {
            name: Secret(value)
            for name, value in (
                ("aws_access_key_id", aws_access_key_id),
                ("aws_secret_access_key", aws_secret_access_key),
                ("aws_session_token", aws_session_token),
            )
            if value
        }
        self._profile = profile_name.strip() if profile_name else None
        self._lock = threading.RLock()
        self._session: Any = None
        self._region: str | None = None
        self._clients: collections.OrderedDict[tuple[Any, ...], Any] = collections.OrderedDict()
        self._identity: dict[str, str] | None = None

    # -- pickling: a copy builds its own session ----------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_lock=None, _session=None, _clients=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._clients = collections.OrderedDict()

    # -- the session --------------------------------------------------------------------------------

    @property
    def region(self) -> str:
        """The client's region: the URI's, else the option ``region_name``, else the AWS chain's
        (``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the profile), else ``us-west-2``."""
        if self._explicit_region:
            return self._explicit_region
        self.session()
        return self._region  # type: ignore[return-value]

    def session(self) -> Any:
        """The boto3 session (made on first use)."""
        with self._lock:
            if self._session is None:
                self._session = self._make_session()
            return self._session

    def _make_session(self) -> Any:
        import boto3

        action = "Setting up the AWS session"
        options = {name: value.reveal() for name, value in self._credentials.items()}
        try:
            base = boto3.Session(profile_name=self._profile, region_name=self._explicit_region, **options)
        except Exception as exc:
            raise translate(exc, action=action) from exc
        region = base.region_name
        if not region:
            logger.info("No AWS region configured; using %s (as MLflow does)", DEFAULT_REGION)
            region = DEFAULT_REGION
        self._region = region  # every client is made for an explicit region, so the session's may stay unset
        source = base.get_credentials()
        _register(source)
        if not self.assume_role_arn:
            return base
        if source is None:
            raise translate(_no_credentials(), action=f"Assuming role {self.assume_role_arn}")
        return self._assumed_role_session(base, source, region)

    def _assumed_role_session(self, base: Any, source: Any, region: str) -> Any:
        import boto3
        import botocore.session
        from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

        def sts_client(service: str, **credentials: Any) -> Any:
            return base.client(service, region_name=region, **self._client_arguments(service, region), **credentials)

        fetcher = AssumeRoleCredentialFetcher(
            client_creator=sts_client,
            source_credentials=source,
            role_arn=self.assume_role_arn,
            extra_args={"RoleSessionName": "deployflow-sagemaker"},
        )

        def fetch() -> dict[str, Any]:
            try:
                fresh = fetcher.fetch_credentials()
            except Exception as exc:
                raise translate(exc, action=f"Assuming role {self.assume_role_arn}") from exc
            for key in ("access_key", "secret_key", "token"):
                register_secret(fresh.get(key))
            return fresh

        logger.info("Assuming role %s for SageMaker calls", self.assume_role_arn)
        core = botocore.session.Session()
        core._credentials = DeferredRefreshableCredentials(method="assume-role", refresh_using=fetch)
        return boto3.Session(botocore_session=core, region_name=region)

    def _client_arguments(self, service: str, region: str, *, attempts: int | None = None, read_timeout: float | None = None) -> dict[str, Any]:
        from botocore.config import Config

        from ... import __version__

        retries = self.settings.retry.max_retries if attempts is None else max(attempts - 1, 0)
        read = self.settings.timeout if read_timeout is None else read_timeout
        options: dict[str, Any] = {
            "region_name": region,
            "retries": {"mode": "standard", "max_attempts": retries},
            "connect_timeout": min(self.settings.connect_timeout, read),
            "read_timeout": read,
            "max_pool_connections": self.settings.pool_maxsize,
            "user_agent_extra": f"deployflow/{__version__}",
        }
        url = self.endpoint_urls.get(service)
        if service == "s3" and url:
            options["s3"] = {"addressing_style": "path"}  # a custom S3 URL rarely has per-bucket host names
        arguments: dict[str, Any] = {"config": Config(**options), "verify": self.settings.verify}
        if url:
            arguments["endpoint_url"] = url
        return arguments

    def client(self, service: str, region: str | None = None, *, kind: str = "control", attempts: int | None = None, read_timeout: float | None = None) -> Any:
        """A boto3 client of ``service`` (cached by region, attempts and read timeout)."""
        region = region or self.region
        if read_timeout is None:
            read_timeout = self.settings.timeouts_for(kind)[0]
        attempts = self.settings.retry.max_attempts if attempts is None else attempts
        key = (service, region, attempts, read_timeout)
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
            session = self.session()
            try:
                made = session.client(service, **self._client_arguments(service, region, attempts=attempts, read_timeout=read_timeout))
            except Exception as exc:
                raise translate(exc, action=f"Making the {_SERVICE_TITLES.get(service, service)} client") from exc
            self._clients[key] = made
            while len(self._clients) > _CLIENT_CACHE_SIZE:
                self._clients.popitem(last=False)
            return made

    # -- calls ----------------------------------------------------------------------------------------

    def call(self, service: str, operation: str, *, region: str | None = None, kind: str = "control", **params: Any) -> Any:
        """``<service client>.<operation>(**params)`` under the rules in this module's docstring."""
        region = region or self.region
        action = f"{_SERVICE_TITLES.get(service, service)} {_title(operation)} ({region})"
        attempts = self.settings.retry.max_attempts
        read_timeout = self.settings.timeouts_for(kind)[0]
        budget = current_budget()
        if budget is not None:
            left = budget.remaining_attempts()
            if left is not None:
                if left <= 0:
                    raise TransientError(f"{action}: no attempts left in this operation's budget")
                attempts = min(attempts, left)
            seconds = budget.remaining_seconds()
            if seconds is not None:
                if seconds <= 0:
                    raise RequestTimeoutError(f"{action}: the deadline passed before the call was made")
                read_timeout = _clipped(read_timeout, seconds)
        client = self.client(service, region, attempts=attempts, read_timeout=read_timeout)
        made = 1
        try:
            answer = getattr(client, operation)(**params)
            if isinstance(answer, Mapping):
                made += int((answer.get("ResponseMetadata") or {}).get("RetryAttempts") or 0)
            return answer
        except Exception as exc:
            response = getattr(exc, "response", None)
            if isinstance(response, Mapping):
                made += int((response.get("ResponseMetadata") or {}).get("RetryAttempts") or 0)
            if type(exc).__module__.split(".", 1)[0] not in ("botocore", "boto3", "s3transfer"):
                raise
            raise translate(exc, action=action) from exc
        finally:
            if budget is not None:
                for _ in range(min(made, attempts)):
                    budget.spend()

    def identity(self) -> dict[str, str]:
        """``sts.get_caller_identity()``: ``Account`` and ``Arn`` of whoever the calls run as (cached)."""
        if self._identity is None:
            answer = self.call("sts", "get_caller_identity")
            self._identity = {"Account": str(answer["Account"]), "Arn": str(answer["Arn"])}
        return self._identity

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                close = getattr(client, "close", None)
                if callable(close):
                    close()
            self._clients.clear()


def _endpoint_urls(value: Any) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        if not value.startswith(("http://", "https://")):
            raise InvalidInputError(f"endpoint_url must be an http:// or https:// URL, got {value!r}")
        return {service: value for service in SERVICES}
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(SERVICES))
        if unknown:
            raise InvalidInputError(
                f"endpoint_url names unknown service(s) {', '.join(map(str, unknown))}; known: {', '.join(SERVICES)}"
            )
        urls = {}
        for service, url in value.items():
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise InvalidInputError(f"endpoint_url for {service} must be an http(s) URL, got {url!r}")
            urls[str(service)] = url
        return urls
    raise InvalidInputError(f"endpoint_url must be a URL or a dict of URLs by service, got {type(value).__name__}")


def _register(credentials: Any) -> None:
    """Register credentials boto3 found (or was given) for redaction."""
    if credentials is None:
        return
    try:
        frozen = credentials.get_frozen_credentials()
    except Exception:  # refreshing credentials that cannot be fetched now: the call will say why
        return
    for value in (frozen.access_key, frozen.secret_key, frozen.token):
        register_secret(reveal(value))


def _no_credentials() -> BaseException:
    from botocore.exceptions import NoCredentialsError

    return NoCredentialsError()


def _clipped(limit: float, seconds_left: float) -> float:
    """``limit``, or less when fewer seconds are left: the next power of two seconds (>= 1) above them."""
    if seconds_left >= limit:
        return limit
    step = 1.0
    while step < seconds_left:
        step *= 2
    return min(limit, step)


def _title(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))

