"""Databricks credentials through databricks-sdk's unified authentication (the ``databricks`` extra).

With databricks-sdk installed, the client builds one ``databricks.sdk.core.Config`` on its first request
and sends every request through deployflow's own transport with the headers that ``Config.authenticate()``
returns at that moment. So every auth type the SDK offers works (personal access tokens, OAuth for
service principals, Azure service principals, ``auth_type`` in a profile, ...), and the SDK fetches and
refreshes OAuth tokens itself; only the token endpoint and the workspace's discovery documents are asked
by the SDK's own HTTP code.

What deployflow adds around the SDK:

* the SDK reads the options, then the environment, then a config profile. A profile named by the URI
  (``databricks://<profile>``) or the option ``profile`` is deployflow's promise that the credentials
  come from that profile: its settings are passed to the SDK as given values (they beat the
  environment), and a host or credential variable in the environment that would fill a gap in the
  profile is refused, so an environment token is never sent to the profile's host;
* a config file the SDK is going to read is read first by :mod:`.credentials`, whose errors name the
  line and never show it (the SDK's parser quotes the line, which may hold a secret);
* secrets (given, in the environment, in the profile, and every access token) are registered for
  redaction, and the SDK's errors become :class:`~deployflow.errors.AuthenticationError` (or
  :class:`~deployflow.errors.TargetError`) with deployflow's own text, raised with no chained cause or
  context, so no secret rides along.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import requests
import requests.auth

from ..._extras import require
from ...errors import AuthenticationError, DeploymentError, TargetError, TransientError
from ...redaction import redact, register_secret, reveal
from ...transport import HttpSettings
from .credentials import (
    AUTH_TYPE_ENV,
    HOST_ENV,
    PROFILE_ENV,
    TOKEN_ENV,
    DatabricksCredentials,
    config_file_path,
    normalise_host,
    profile_from_uri,
    read_profile,
)

__all__ = ["SDK_OPTIONS", "sdk_installed", "connect_with_sdk", "SdkAuth"]

#: The client options handed to ``Config`` under the same names.
SDK_OPTIONS = (
    "host", "token", "client_id", "client_secret", "azure_client_id", "azure_client_secret",
    "azure_tenant_id", "auth_type", "config_file",
)  # fmt: skip

_NO_CREDENTIALS = "cannot configure default credentials"
_SEVERAL_METHODS = "more than one authorization method configured"


def sdk_installed() -> bool:
    """Whether databricks-sdk can be found (nothing is imported)."""
    try:
        return importlib.util.find_spec("databricks.sdk") is not None
    except (ImportError, ValueError):  # no `databricks` package at all, or a module without a spec
        return False


class SdkAuth(requests.auth.AuthBase):
    """The headers of a databricks-sdk ``Config`` on every request (and every retry), so a token that
    expired is refreshed by the SDK before the request is sent. Each credential it sends is registered
    for redaction."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self.auth_type = str(getattr(config, "auth_type", None) or "unknown")
        self._registered: set[str] = set()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        for name, value in self.headers().items():
            request.headers[name] = value
        return request

    def headers(self) -> dict[str, str]:
        """Fresh authentication headers; a failure is a deployflow error without the SDK's exception."""
        unreachable = reason = None
        try:
            headers = dict(self._config.authenticate())
        except requests.RequestException as exc:  # the token endpoint could not be reached
            unreachable = redact(f"{type(exc).__name__}: {exc}")[:500]
        except Exception as exc:  # noqa: BLE001 - the SDK raises ValueError and friends
            reason = _reason(exc)
        if unreachable is not None:
            # Our request was not sent, so asking again is always safe.
            raise TransientError(
                f"Databricks {self.auth_type} authentication could not reach the token endpoint: {unreachable}",
                retryable=True,
            )
        if reason is not None:
            raise AuthenticationError(f"Databricks {self.auth_type} authentication got no access token ({reason})")
        for value in headers.values():
            if isinstance(value, str) and value not in self._registered:
                self._registered.add(value)
                register_secret(value)
                scheme, _, credential = value.partition(" ")
                if credential and scheme.isalpha():
                    register_secret(credential.strip())
        return headers

    def __repr__(self) -> str:
        return f"SdkAuth(auth_type={self.auth_type!r})"


def connect_with_sdk(
    target_uri: str,
    options: Mapping[str, Any],
    settings: HttpSettings,
    environ: Mapping[str, str] | None = None,
) -> tuple[DatabricksCredentials, SdkAuth]:
    """Build the SDK ``Config`` for a client's options (plain values) and return what was found and
    the requests auth that sends its headers. Raises deployflow errors only."""
    core = require("databricks.sdk.core", "databricks", "Databricks authentication through databricks-sdk")
    environ = os.environ if environ is None else environ
    attributes = {attribute.name: attribute for attribute in core.Config.attributes()}
    credential_names = [name for name, attribute in attributes.items() if name == "host" or attribute.auth]

    given: dict[str, str] = {}
    for name in SDK_OPTIONS:
        value = reveal(options.get(name))
        if value is not None and value != "":
            given[name] = os.fspath(value) if name == "config_file" else str(value)
    if "host" in given:
        given["host"] = normalise_host(given["host"], "the option host")
    named = profile_from_uri(target_uri) or (str(options["profile"]) if options.get("profile") else None)
    path = config_file_path(given, environ)

    def from_environment(name: str, taken: Mapping[str, str]) -> str | None:
        """The variable that gives attribute ``name`` to the SDK, unless ``taken`` already has it."""
        if name in taken:
            return None
        attribute = attributes[name]
        for variable in (attribute.env, *getattr(attribute, "env_aliases", ())):
            if variable and environ.get(variable):
                return variable
        return None

    kwargs = dict(given)
    profile_name: str | None = None
    profile: dict[str, str] = {}
    if named:
        profile_name, profile = read_profile(path, named, required=True) or (named, {})  # raises when missing
        for key, value in profile.items():
            if key in attributes and key not in kwargs and value:
                kwargs[key] = value
        kwargs["profile"] = named
        mixed = [v for v in (from_environment(name, kwargs) for name in credential_names) if v]
        if mixed:
            raise TargetError(
                f"Databricks profile {named!r} was asked for, but the environment also sets {', '.join(mixed)}, "
                f"which would be used with the profile's settings; unset {'them' if len(mixed) > 1 else 'it'}, "
                "or put the value in the profile or in the client options"
            )
    else:
        # The SDK's own rule: a config file is read for a profile named in the environment, or when
        # neither the options nor the environment set a host or any credential.
        configured = any(name in given or from_environment(name, {}) for name in credential_names)
        if environ.get(PROFILE_ENV) or not configured:
            # The SDK reads this profile: read it first, with errors that never quote the file.
            found = read_profile(path, environ.get(PROFILE_ENV) or None, required=bool(environ.get(PROFILE_ENV)))
            if found is not None:
                profile_name, profile = found

    # Every secret the SDK may put in a message, registered before it can.
    for name, attribute in attributes.items():
        if attribute.sensitive:
            register_secret(kwargs.get(name))
            register_secret(profile.get(name))
            for variable in (attribute.env, *getattr(attribute, "env_aliases", ())):
                if variable:
                    register_secret(environ.get(variable))

    # Where each credential attribute comes from, as the SDK will take it: options, then the
    # environment, then the profile (a named profile's settings are given values, so they beat the
    # environment; the environment filling a gap beside it was refused above).
    origins: dict[str, str] = {}
    for name in credential_names:
        if name in given:
            origins[name] = "options"
        elif name in kwargs or (profile.get(name) and not from_environment(name, {})):
            origins[name] = "profile"
        elif from_environment(name, {}):
            origins[name] = str(from_environment(name, {}))
    where = _Where(origins, profile_name, path)

    # The SDK asks the workspace for its metadata while the Config is built, for every auth type; it
    # is best effort, and by default an unreachable host is retried for five minutes. One second of
    # retries (the least it takes), each attempt bounded by our connect timeout.
    settings_kwargs = {"retry_timeout_seconds": 1, "http_timeout_seconds": settings.connect_timeout}

    bad_file = False
    failure: str | None = None
    try:
        config = core.Config(**kwargs, **settings_kwargs)
    except configparser.Error:
        bad_file = True  # the SDK read a file we did not expect it to read; see below
    except Exception as exc:  # noqa: BLE001 - ValueError mostly; any failure is reported the same way
        failure = _reason(exc)
    # Raised here, outside the handlers: the SDK's exceptions may hold secrets, so none is chained.
    if bad_file:
        read_profile(path, profile_name or named or environ.get(PROFILE_ENV) or None, required=True)
        raise TargetError(f"The Databricks config file {path} cannot be read by databricks-sdk")
    if failure is not None:
        auth_type = kwargs.get("auth_type") or profile.get("auth_type") or environ.get(AUTH_TYPE_ENV)
        raise _translate(failure, where, auth_type, path, core)

    for name, attribute in attributes.items():
        if attribute.sensitive:
            register_secret(getattr(config, name, None))
    auth_type = str(config.auth_type or "unknown")
    source = where.describe(kept=lambda name: bool(getattr(config, name, None)))
    if not config.host:
        raise AuthenticationError(f"No Databricks host found ({source or 'nowhere'} has no host): pass host= or set {HOST_ENV}")
    host = normalise_host(str(config.host), source or "databricks-sdk")
    token = str(config.token or "") if auth_type == "pat" else ""
    return DatabricksCredentials(host, token, source, auth_type), SdkAuth(config)


class _Where:
    """Where the host and credential attributes come from ("options", an environment variable, or
    "profile"), said in words."""

    def __init__(self, origins: Mapping[str, str], profile_name: str | None, path: Path) -> None:
        self.origins = dict(origins)
        self.profile_name = profile_name
        self.path = path

    def describe(self, kept: Any = None) -> str:
        """"options", "the environment (VAR, ...)" and "profile 'p' of PATH", joined by "and"; with
        ``kept``, only the attributes it accepts (those the SDK used)."""
        origins = {name: place for name, place in self.origins.items() if kept is None or kept(name)}
        places = list(origins.values())
        parts = []
        if "options" in places:
            parts.append("options")
        variables = [place for place in places if place not in ("options", "profile")]
        if variables:
            parts.append(f"the environment ({', '.join(variables)})")
        if "profile" in places and self.profile_name:
            parts.append(f"profile {self.profile_name!r} of {self.path}")
        return " and ".join(parts)


def _reason(error: BaseException) -> str:
    """The SDK's message, redacted and kept short (it ends with the SDK's summary of the settings it
    saw, secrets already shown as ***)."""
    text = redact(str(error)).strip() or type(error).__name__
    return text if len(text) <= 1000 else text[:1000] + "..."


def _offered_auth_types(core: Any) -> list[str]:
    try:
        providers = core.DefaultCredentials()._auth_providers  # not public: listed only when present
        return [str(provider.auth_type()) for provider in providers]
    except Exception:  # noqa: BLE001 - another SDK version: leave the list out
        return []


_HOW = (
    "Pass host= and token= to get_deploy_client, set {host_env} and {token_env}, or add a profile with host "
    "and token to {path} and use 'databricks://<profile>'. For a service principal pass client_id= and "
    "client_secret= (OAuth; or set DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET), or azure_client_id=, "
    "azure_client_secret= and azure_tenant_id= (an Azure service principal; or set ARM_CLIENT_ID, "
    "ARM_CLIENT_SECRET and ARM_TENANT_ID); auth_type= ({auth_env}) chooses one way by its databricks-sdk name."
)


def _missing(found: Iterable[str]) -> list[str]:
    """What is missing for the usual ways to authenticate, given the attributes found."""
    have = set(found)
    missing = [] if have & {"host", "azure_workspace_resource_id"} else ["host"]
    pairs = (("client_id", "client_secret"), ("azure_client_id", "azure_client_secret"))
    if "token" in have or any(a in have and b in have for a, b in pairs):
        return missing
    for first, second in pairs:
        if first in have or second in have:
            return [*missing, second if first in have else first]
    if have - {"host", "azure_workspace_resource_id", "azure_tenant_id"}:
        return missing  # another auth type's settings: the SDK's message says what it lacked
    return [*missing, "token"]


def _translate(reason: str, where: _Where, auth_type: Any, path: Path, core: Any) -> DeploymentError:
    """The deployflow error for the SDK's failure to build its configuration (``reason``, redacted)."""
    source = where.describe()
    how = _HOW.format(host_env=HOST_ENV, token_env=TOKEN_ENV, path=path, auth_env=AUTH_TYPE_ENV)
    if _NO_CREDENTIALS in reason:
        missing = _missing(where.origins)
        chosen = bool(auth_type) and str(auth_type).strip().lower() != "pat"
        if missing and not (chosen and missing[-1] == "token"):
            what = " and ".join(missing)
            found = f" ({source} has no {what})" if source else ""
            return AuthenticationError(f"No Databricks {what} found{found}. {how}")
        offered = _offered_auth_types(core)
        listed = f" (this databricks-sdk offers: {', '.join(offered)})" if offered else ""
        if auth_type:
            return AuthenticationError(
                f"databricks-sdk cannot authenticate with auth_type {str(auth_type)!r} and the settings of "
                f"{source or 'nowhere'}{listed}: {reason}"
            )
        return AuthenticationError(f"databricks-sdk found no way to authenticate with the settings of {source}{listed}: {reason}. {how}")
    if _SEVERAL_METHODS in reason:
        return AuthenticationError(
            f"The Databricks settings of {source or 'the environment'} name more than one way to authenticate "
            f"({reason}); set auth_type (for example 'pat' or 'oauth-m2m') to choose one"
        )
    return AuthenticationError(f"Databricks authentication through databricks-sdk failed ({source or 'no settings'}): {reason}")
