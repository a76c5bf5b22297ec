"""Where the databricks target finds its workspace URL and token: options, environment, config profiles."""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests.auth

from ...errors import AuthenticationError, TargetError
from ...redaction import Secret, redact, register_secret

__all__ = [
    "DatabricksCredentials",
    "resolve_credentials",
    "profile_from_uri",
    "normalise_host",
    "BearerToken",
    "HOST_ENV",
    "TOKEN_ENV",
    "PROFILE_ENV",
    "CONFIG_FILE_ENV",
]

HOST_ENV = "DATABRICKS_HOST"
TOKEN_ENV = "DATABRICKS_TOKEN"
PROFILE_ENV = "DATABRICKS_CONFIG_PROFILE"
CONFIG_FILE_ENV = "DATABRICKS_CONFIG_FILE"
DEFAULT_PROFILE = "DEFAULT"


@dataclass(frozen=True)
class DatabricksCredentials:
    """A workspace URL and the token for it, and where they came from. The repr never shows the token;
    the token is registered for redaction when made, and again when unpickled in another process."""

    host: str
    token: str = field(repr=False)
    source: str = "options"

    def __post_init__(self) -> None:
        register_secret(self.token)

    def __repr__(self) -> str:
        return f"DatabricksCredentials(host={self.host!r}, source={self.source!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (DatabricksCredentials, (self.host, self.token, self.source))


def _config_file(options: Mapping[str, Any], environ: Mapping[str, str]) -> Path:
    given = options.get("config_file") or environ.get(CONFIG_FILE_ENV)
    return Path(os.path.expanduser(str(given) if given else "~/.databrickscfg"))


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
    """Find the workspace host and token, in this order of precedence:

    1. the options ``host`` and ``token``;
    2. the profile named by the URI (``databricks://<profile>``) or the option ``profile``: only it;
    3. otherwise ``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN`` when the token is set, else the profile
       ``DATABRICKS_CONFIG_PROFILE`` (default ``DEFAULT``) of the config file.

    The config file is ``~/.databrickscfg`` unless ``DATABRICKS_CONFIG_FILE`` or the option ``config_file``
    names another. Host and token always come from the same place unless both are given as options, so a
    token is never sent to a host it was not stored with.
    """
    options = options or {}
    environ = os.environ if environ is None else environ
    explicit_profile = profile_from_uri(target_uri) or options.get("profile")
    path = _config_file(options, environ)
    found: dict[str, str] = {}
    source = ""
    if explicit_profile:
        found = _profile(path, str(explicit_profile), required=True) or {}
        source = f"profile {explicit_profile!r} of {path}"
    elif environ.get(TOKEN_ENV):
        found = {"host": environ.get(HOST_ENV, ""), "token": environ[TOKEN_ENV]}
        source = f"the environment ({HOST_ENV}, {TOKEN_ENV})"
    else:
        name = environ.get(PROFILE_ENV) or DEFAULT_PROFILE
        profile = _profile(path, name, required=bool(environ.get(PROFILE_ENV)))
        if profile is not None:
            found, source = profile, f"profile {name!r} of {path}"
        elif environ.get(HOST_ENV):
            found, source = {"host": environ[HOST_ENV]}, f"the environment ({HOST_ENV})"
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
        missing = " and ".join(name for name, value in (("host", host), ("token", token)) if not value)
        where = f" ({source} has no {missing})" if source else ""
        raise AuthenticationError(
            f"No Databricks {missing} found{where}. Pass host= and token= to get_deploy_client, set "
            f"{HOST_ENV} and {TOKEN_ENV}, or add a profile with host and token to {path} and use "
            "'databricks://<profile>'. (deployflow reads personal access tokens; other Databricks auth "
            "types are not supported yet.)"
        )
    return DatabricksCredentials(normalise_host(host, source), token, source)


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


class BearerToken(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` as requests auth, so a ~/.netrc entry cannot replace it. The
    token is held as a :class:`~deployflow.redaction.Secret`."""

    def __init__(self, token: object) -> None:
        self.token = Secret(token)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token.reveal()}"
        return request

    def __repr__(self) -> str:
        return "BearerToken(***)"


# --------------------------------------------------------------------------------------------------
