"""Where the databricks target finds its workspace URL and token without databricks-sdk: options,
environment, config profiles. (With databricks-sdk installed, :mod:`.sdk_auth` finds the credentials.)"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..._extras import install_command
from ...errors import AuthenticationError, MissingExtraError, TargetError
from ...redaction import redact, register_secret

__all__ = [
    "DatabricksCredentials",
    "resolve_credentials",
    "profile_from_uri",
    "normalise_host",
    "HOST_ENV",
    "TOKEN_ENV",
    "PROFILE_ENV",
    "CONFIG_FILE_ENV",
    "AUTH_TYPE_ENV",
    "SDK_ONLY_OPTIONS",
    "config_file_path",
    "read_profile",
    "missing_extra",
]

HOST_ENV = "DATABRICKS_HOST"
TOKEN_ENV = "DATABRICKS_TOKEN"
PROFILE_ENV = "DATABRICKS_CONFIG_PROFILE"
CONFIG_FILE_ENV = "DATABRICKS_CONFIG_FILE"
AUTH_TYPE_ENV = "DATABRICKS_AUTH_TYPE"
DEFAULT_PROFILE = "DEFAULT"

#: Client options that only databricks-sdk can use (OAuth and Azure service principals; ``auth_type``
#: other than ``pat`` is checked on its own).
SDK_ONLY_OPTIONS = ("client_id", "client_secret", "azure_client_id", "azure_client_secret", "azure_tenant_id")
# Settings of the other Databricks auth types, as environment variables and as profile keys: without
# databricks-sdk they mean "this was configured for something deployflow cannot send".
_SDK_ONLY_ENV = (
    "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "ARM_CLIENT_ID", "ARM_CLIENT_SECRET", "ARM_TENANT_ID",
    "ARM_USE_MSI", "DATABRICKS_AZURE_RESOURCE_ID", "DATABRICKS_USERNAME", "DATABRICKS_PASSWORD",
)  # fmt: skip
_SDK_ONLY_PROFILE_KEYS = (
    *SDK_ONLY_OPTIONS, "azure_use_msi", "azure_workspace_resource_id", "username", "password",
    "google_service_account", "google_credentials", "metadata_service_url",
)  # fmt: skip


@dataclass(frozen=True)
class DatabricksCredentials:
    """A workspace URL, how requests to it authenticate, and where that was found.

    ``auth_type`` is databricks-sdk's name for the way (``pat``, ``oauth-m2m``, ``azure-client-secret``,
    ...); ``token`` is the personal access token for ``pat`` and empty otherwise (the SDK makes the
    headers of the other types). The repr never shows the token; the token is registered for
    redaction when made, and again when unpickled in another process."""

    host: str
    token: str = field(repr=False)
    source: str = "options"
    auth_type: str = "pat"

    def __post_init__(self) -> None:
        register_secret(self.token)

    def __repr__(self) -> str:
        return f"DatabricksCredentials(host={self.host!r}, source={self.source!r}, auth_type={self.auth_type!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (DatabricksCredentials, (self.host, self.token, self.source, self.auth_type))


def config_file_path(options: Mapping[str, Any], environ: Mapping[str, str]) -> Path:
    """The config file: the option ``config_file``, else ``DATABRICKS_CONFIG_FILE``, else ``~/.databrickscfg``."""
    given = options.get("config_file") or environ.get(CONFIG_FILE_ENV)
    return Path(os.path.expanduser(os.fspath(given) if given else "~/.databrickscfg"))



def _read_profiles(path: Path) -> configparser.ConfigParser:
    # A section named DEFAULT is an ordinary profile here: configparser would otherwise copy its token
    # into every other profile, and send it to their hosts.
    parser = configparser.ConfigParser(interpolation=None, default_section="\x00 no defaults \x00")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TargetError(f"The Databricks config file {path} cannot be read: {exc.strerror or exc}") from exc
    problem: str | None = None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problem = f"line {line} is not UTF-8 text"
    else:
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error as exc:
            problem = _parse_problem(exc)
    if problem is not None:
        # Raised here, after the handlers: the decode and parse errors hold the raw bytes or quote the
        # offending line, which may be the token, so neither may ride along as __cause__ or __context__.
        raise TargetError(f"The Databricks config file {path} cannot be read: {problem}")
    return parser


def _parse_problem(error: configparser.Error) -> str:
    """What is wrong with the file, by line number: never the line's content."""
    if isinstance(error, configparser.MissingSectionHeaderError):
        return f"line {error.lineno} comes before the first [profile] header"
    if isinstance(error, configparser.ParsingError):
        numbers = ", ".join(str(number) for number, _ in error.errors) or "?"
        plural = "s" if len(error.errors) > 1 else ""
        return f"line{plural} {numbers} {'are' if plural else 'is'} not of the form 'name = value'"
    if isinstance(error, configparser.DuplicateOptionError):
        return f"line {error.lineno} sets {error.option!r} a second time in profile {error.section!r}"
    if isinstance(error, configparser.DuplicateSectionError):
        return f"line {error.lineno} starts profile {error.section!r} a second time"
    return f"it is not a valid config file ({type(error).__name__})"


def read_profile(path: Path, name: str | None, *, required: bool) -> tuple[str, dict[str, str]] | None:
    """``(name, settings)`` of profile ``name`` of the config file at ``path``; for ``None``, the
    profile databricks-sdk falls back to (``default_profile`` of the file's ``[__settings__]``, else
    ``DEFAULT``). ``None`` when there is no such file or profile and ``required`` is false; otherwise
    raises :class:`TargetError` saying which (a malformed file by line number, never its content)."""
    if name is None and path.is_file():
        settings = _read_profiles(path)
        if settings.has_section("__settings__"):
            chosen = settings.get("__settings__", "default_profile", fallback="").strip()
            if chosen:
                name, required = chosen, True
    found = _profile(path, name or DEFAULT_PROFILE, required=required)
    return None if found is None else (name or DEFAULT_PROFILE, found)


def _profile(path: Path, name: str, *, required: bool) -> dict[str, str] | None:
    if not path.is_file():
        if required:
            raise TargetError(
                f"Databricks profile {name!r} was asked for, but the config file {path} does not exist "
                f"(set {CONFIG_FILE_ENV} or the option config_file to use another file)"
            )
        return None
    parser = _read_profiles(path)
    if not parser.has_section(name):
        if required:
            known = ", ".join(parser.sections()) or "none"
            raise TargetError(f"Databricks profile {name!r} is not in {path} (profiles there: {known})")
        return None
    return {key: value.strip() for key, value in parser.items(name)}


def normalise_host(host: str, source: str) -> str:
    """``host`` as a workspace URL (``https://`` added when it has no scheme, no trailing slash);
    raises :class:`TargetError` naming ``source`` when it is not one."""
    host = host.strip()
    if "://" not in host:
        host = "https://" + host
    try:
        parts = urlsplit(host)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise TargetError(f"The Databricks host from {source} is not a valid URL: {redact(host)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise TargetError(f"The Databricks host from {source} is not a workspace URL: {redact(host)!r}")
    return host.rstrip("/")


def resolve_credentials(
    target_uri: str, options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> DatabricksCredentials:
    """Find the workspace host and personal access token without databricks-sdk, in this order of
    precedence:

    1. the options ``host`` and ``token``;
    2. the profile named by the URI (``databricks://<profile>``) or the option ``profile``: only it;
    3. otherwise ``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN`` when the token is set, else the profile
       ``DATABRICKS_CONFIG_PROFILE`` (default ``DEFAULT``) of the config file.

    The config file is ``~/.databrickscfg`` unless ``DATABRICKS_CONFIG_FILE`` or the option ``config_file``
    names another. Host and token come from the same place unless one of them is given as an option: a
    token stored in the environment or a profile goes to the host stored with it, or to the option host.

    Raises :class:`~deployflow.errors.MissingExtraError` for what only databricks-sdk can use: the
    options ``client_id``, ``client_secret``, ``azure_client_id``, ``azure_client_secret``,
    ``azure_tenant_id``; an ``auth_type`` other than ``pat`` (option, profile or ``DATABRICKS_AUTH_TYPE``);
    and, when no token is found, a profile or environment set up for another auth type.
    """
    options = options or {}
    environ = os.environ if environ is None else environ
    given = [name for name in SDK_ONLY_OPTIONS if options.get(name) not in (None, "")]
    if given:
        raise missing_extra(f"the option{'s' if len(given) > 1 else ''} {', '.join(given)}")
    explicit_profile = profile_from_uri(target_uri) or options.get("profile")
    path = config_file_path(options, environ)
    found: dict[str, str] = {}
    source = ""
    profile: dict[str, str] = {}  # what `found` holds when it came from a profile
    if explicit_profile:
        found = profile = _profile(path, str(explicit_profile), required=True) or {}
        source = f"profile {explicit_profile!r} of {path}"
    elif environ.get(TOKEN_ENV):
        found = {"host": environ.get(HOST_ENV, ""), "token": environ[TOKEN_ENV]}
        source = f"the environment ({HOST_ENV}, {TOKEN_ENV})"
    else:
        name = environ.get(PROFILE_ENV) or DEFAULT_PROFILE
        read = _profile(path, name, required=bool(environ.get(PROFILE_ENV)))
        if read is not None:
            found = profile = read
            source = f"profile {name!r} of {path}"
        elif environ.get(HOST_ENV):
            found, source = {"host": environ[HOST_ENV]}, f"the environment ({HOST_ENV})"
    if options.get("auth_type") not in (None, ""):
        _check_auth_type(options["auth_type"], "the option auth_type")
    elif profile.get("auth_type"):
        _check_auth_type(profile["auth_type"], f"the auth_type of {source}")
    else:
        _check_auth_type(environ.get(AUTH_TYPE_ENV), f"the environment ({AUTH_TYPE_ENV})")
    profile_source = source
    if options.get("host"):
        found["host"] = str(options["host"])
        source = "options" if options.get("token") else f"the option host and {source or 'nowhere'}"
    if options.get("token"):
        found["token"] = str(options["token"])
        source = "options" if options.get("host") else f"the option token and {source or 'nowhere'}"
    token = (found.get("token") or "").strip()
    register_secret(token)
    host = (found.get("host") or "").strip()
    if not host or not token:
        if not token:
            _refuse_other_auth_types(profile, profile_source, environ)
        missing = " and ".join(name for name, value in (("host", host), ("token", token)) if not value)
        where = f" ({source} has no {missing})" if source else ""
        raise AuthenticationError(
            f"No Databricks {missing} found{where}. Pass host= and token= to get_deploy_client, set "
            f"{HOST_ENV} and {TOKEN_ENV}, or add a profile with host and token to {path} and use "
            "'databricks://<profile>'. (Other Databricks auth types, such as OAuth for service principals, "
            f"need the 'databricks' extra: {install_command('databricks')}.)"
        )
    return DatabricksCredentials(normalise_host(host, source), token, source)


def missing_extra(what: str) -> MissingExtraError:
    """The error for Databricks credentials that only databricks-sdk can use."""
    return MissingExtraError(
        f"Databricks authentication with {what} needs the 'databricks' extra: {install_command('databricks')} "
        "(missing module: databricks.sdk). Without it deployflow sends personal access tokens only "
        "(host and token).",
        extra="databricks",
        module="databricks.sdk",
    )


def _check_auth_type(value: Any, where: str) -> None:
    if value not in (None, "") and str(value).strip().lower() != "pat":
        raise missing_extra(f"auth_type {str(value).strip()!r} ({where})")


def _refuse_other_auth_types(profile: Mapping[str, str], source: str, environ: Mapping[str, str]) -> None:
    """No token was found: if the profile or the environment is set up for another auth type, say that
    it needs databricks-sdk."""
    keys = [key for key in _SDK_ONLY_PROFILE_KEYS if profile.get(key)]
    if keys:
        raise missing_extra(f"{', '.join(keys)} from {source}")
    variables = [name for name in _SDK_ONLY_ENV if environ.get(name)]
    if variables:
        raise missing_extra(f"the environment ({', '.join(variables)})")


def profile_from_uri(target_uri: str) -> str | None:
    """The profile a ``databricks`` URI names, or ``None``; raises :class:`TargetError` for other forms."""
    if target_uri == "databricks":
        return None
    parts = urlsplit(target_uri)
    netloc_form = target_uri.startswith("databricks://")
    if (
        parts.scheme != "databricks"
        or not netloc_form
        or not parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or ":" in parts.netloc
    ):
        raise TargetError(
            f"{redact(target_uri)!r} is not a Databricks target URI: use 'databricks' or 'databricks://<profile>'"
        )
    return parts.netloc
