"""``DeploymentHook``: a deployflow client from an Airflow connection of type ``deployflow``.

The connection holds:

* **Target URI** (the connection's *host*): ``local``, ``local:///abs/state/dir``, ``databricks://prod``,
  ``serving+https://host``, ... An extra key ``target_uri`` takes precedence, for URIs that do not fit
  a URI-form connection string.
* **Token** (the connection's *password*): handed to the client as the option named by the extra key
  ``token_option`` (default ``auth_token``, which the ``local`` and ``serving`` targets accept).
* **Extra** (JSON): every other key is a client option, as in ``get_deploy_client(uri, **options)``:
  ``{"timeout": 30}``; except ``test_endpoint``, the endpoint the UI's *Test* button checks (see
  :meth:`DeploymentHook.test_connection`), and ``service_principal_oauth`` (below), which are not
  passed to the client.

Databricks service principals, as connections of Airflow's Databricks provider hold them (the
``databricks`` target needs databricks-sdk for these: ``pip install 'deployflow[databricks]'``):

* **OAuth for a Databricks service principal**: the extra key ``service_principal_oauth: true`` makes
  the *login* the client option ``client_id`` and the *password* the option ``client_secret``;
* **Azure service principal**: a connection with a *login* and the extra key ``azure_tenant_id`` (and
  no ``service_principal_oauth``) is an Azure service principal's: the login becomes the option
  ``azure_client_id`` and the password ``azure_client_secret``;
* or, as the connection form offers them, the extra keys ``client_id`` and ``client_secret`` (a
  password field), ``azure_client_id``, ``azure_client_secret``, ``azure_tenant_id`` and ``auth_type``,
  which are client options like any other.

The workspace URL is the extra key ``host``; a personal access token is the password with
``token_option: token``. A client secret given both ways (login/password and extra key) is refused.

Retries: the hook builds its client for pipeline steps (operators, sensors, triggers and
``test_connection`` all use :meth:`DeploymentHook.get_conn`), so the client always has the transport's
retries off (``max_retries=0``) and Airflow's task ``retries`` are the only retry level: a one-request
step sends at most ``1 + retries`` requests. A ``max_retries`` in the extra is therefore not used (the
hook logs a WARNING saying so); a target whose client takes no ``max_retries`` option keeps its own
retry policy. The rule, shared with the Prefect tasks, is "Retries in pipeline steps" in
:mod:`deployflow.orchestration`. To keep the transport's retries outside steps, build a client yourself:
``uri, options = client_arguments(conn_id, conn.host, conn.password, conn.extra_dejson)``, then
``deployflow.get_deploy_client(uri, **options)``.

For example, in the environment::

    AIRFLOW_CONN_DEPLOYFLOW_DEFAULT='{"conn_type": "deployflow", "host": "local"}'
    AIRFLOW_CONN_SERVING='{"conn_type": "deployflow", "host": "serving+https://models.internal",
                           "password": "<token>", "extra": {"timeout": 30}}'
    AIRFLOW_CONN_DATABRICKS_SP='{"conn_type": "deployflow", "host": "databricks",
                                 "login": "<client id>", "password": "<client secret>",
                                 "extra": {"host": "https://adb-1234.5.azuredatabricks.net",
                                           "service_principal_oauth": true}}'

The token and the client secrets go to the client as keyword options, never through ``os.environ``;
they are registered with deployflow's redaction (so no deployflow message or log line shows them) and
with Airflow's secret masker.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Mapping

from airflow.sdk import BaseHook

from deployflow import (
    BaseDeploymentClient,
    DeploymentError,
    InvalidInputError,
    State,
    client_for_steps,
    get_deploy_client,
)
from deployflow.redaction import redact, register_secret


if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = ["DeploymentHook", "client_arguments"]

#: The option the connection's password becomes unless the extra says ``token_option``.
DEFAULT_TOKEN_OPTION = "auth_token"

_EXTRA_PREFIX = "extra__deployflow__"
_RESERVED = frozenset({"target_uri", "token_option", "test_endpoint", "service_principal_oauth"})
#: Extra keys whose values are credentials: masked in task logs like the password.
SECRET_EXTRA_KEYS = (
    "client_secret", "azure_client_secret", "token", "auth_token", "api_key", "password",
    "aws_secret_access_key", "aws_session_token",
)


def _plain_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The extra without form prefixes and without empty values (an empty form field means "unset")."""
    plain: dict[str, Any] = {}
    for key, value in extra.items():
        name = key[len(_EXTRA_PREFIX):] if key.startswith(_EXTRA_PREFIX) else key
        if value is None or value == "":
            continue
        plain[name] = value
    return plain


def client_arguments(
    conn_id: str, host: str | None, password: str | None, extra: Mapping[str, Any], login: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The ``(target_uri, options)`` a connection stands for (no I/O, no side effects).

    The password becomes the option ``token_option`` names (default ``auth_token``), or, for a
    Databricks service principal, ``client_secret`` (extra ``service_principal_oauth: true``, the login
    being ``client_id``) or ``azure_client_secret`` (extra ``azure_tenant_id`` and a login, the login
    being ``azure_client_id``). Otherwise the login is not used.

    Raises :class:`deployflow.InvalidInputError` when the connection names no target, or gives one
    option twice (in the login or password and in the extra).
    """
    plain = _plain_extra(extra)
    target_uri = str(plain.get("target_uri") or host or "").strip()
    if not target_uri:
        raise InvalidInputError(
            f"Connection {conn_id!r} names no deployflow target: set its Target URI (host), e.g. 'local' "
            "or 'serving+https://host', or the extra key 'target_uri'"
        )
    options = {key: value for key, value in plain.items() if key not in _RESERVED}
    oauth = _flag(plain.get("service_principal_oauth", False), conn_id)
    principal = oauth or bool(login and plain.get("azure_tenant_id"))
    if principal:
        if plain.get("token_option"):
            raise InvalidInputError(
                f"Connection {conn_id!r} is a service principal's (its login and password are the client id "
                "and secret), so its extra must not set token_option"
            )
        id_option, secret_option = ("client_id", "client_secret") if oauth else ("azure_client_id", "azure_client_secret")
        given = {id_option: login, secret_option: password}
    else:
        given = {str(plain.get("token_option") or DEFAULT_TOKEN_OPTION): password}
    for option, value in given.items():
        if not value:
            continue
        if option in options:
            if principal:
                raise InvalidInputError(
                    f"Connection {conn_id!r} gives {option} in its login or password and again in its extra; "
                    "keep it in one place"
                )
            raise InvalidInputError(
                f"Connection {conn_id!r} holds a token and also sets option {option!r} in its extra; "
                "keep the token in the password field only"
            )
        options[option] = value
    return target_uri, options


def _flag(value: Any, conn_id: str) -> bool:
    """The extra's ``service_principal_oauth``: a JSON boolean, or the words true/false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no", ""):
        return value.strip().lower() in ("true", "1", "yes")
    raise InvalidInputError(f"Connection {conn_id!r}: service_principal_oauth must be true or false, got {value!r}")


class DeploymentHook(BaseHook):
    """Builds a :class:`deployflow.BaseDeploymentClient` from a ``deployflow`` connection.

    :param deployflow_conn_id: the connection to use (default ``deployflow_default``).

    ``get_conn()`` returns the client (built once per hook, closed by :meth:`close`); ``aget_conn()`` is
    the same for an event loop (triggers). The client has the transport's retries off
    (``max_retries=0``, whatever the extra says): Airflow's task retries are the only retry level (see
    "Retries in pipeline steps" in :mod:`deployflow.orchestration`)::

        hook = DeploymentHook("deployflow_local")
        client = hook.get_conn()
        client.wait_for_deployment("churn", timeout=120)
    """

    conn_name_attr = "deployflow_conn_id"
    default_conn_name = "deployflow_default"
    conn_type = "deployflow"
    hook_name = "deployflow"

    def __init__(self, deployflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployflow_conn_id = deployflow_conn_id
        self._client: BaseDeploymentClient | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(deployflow_conn_id={self.deployflow_conn_id!r})"

    # ----------------------------------------------------------------------------------------------

    def get_conn(self) -> BaseDeploymentClient:
        """The client for this hook's connection (built on first call)."""
        if self._client is None:
            conn = self.get_connection(self.deployflow_conn_id)
            extra = conn.extra_dejson
            for secret in (conn.password, *_secret_extras(extra)):
                _mask(secret)
            self._client = self._build(conn, extra)
        return self._client

    async def aget_conn(self) -> BaseDeploymentClient:
        """:meth:`get_conn` for an event loop: the connection is read asynchronously and the client is
        built in a worker thread, so the loop never blocks."""
        if self._client is None:
            if hasattr(self, "aget_connection"):
                conn = await self.aget_connection(self.deployflow_conn_id)
            else:  # pragma: no cover - task SDKs without the async connection lookup
                conn = await asyncio.to_thread(self.get_connection, self.deployflow_conn_id)
            extra = await _aextra(conn)
            for secret in (conn.password, *_secret_extras(extra)):
                await _amask(secret)
            self._client = await asyncio.to_thread(self._build, conn, extra)
        return self._client

    def _build(self, conn: Connection, extra: Mapping[str, Any]) -> BaseDeploymentClient:
        for secret in (conn.password, *_secret_extras(extra)):
            register_secret(secret)
        target_uri, options = client_arguments(
            self.deployflow_conn_id, conn.host, conn.password, extra, login=getattr(conn, "login", None)
        )
        self.log.info(
            "deployflow target %s from connection %r (options: %s)",
            redact(target_uri),
            self.deployflow_conn_id,
            ", ".join(sorted(options)) or "none",
        )
        return self._client_for_steps(target_uri, options)

    def _client_for_steps(self, target_uri: str, options: dict[str, Any]) -> BaseDeploymentClient:
        """The client with the transport's retries off (``max_retries=0``), so that Airflow's retries are
        the only retry level; a client that takes no ``max_retries`` option is built without it."""
        built = client_for_steps(
            lambda **overrides: get_deploy_client(target_uri, **{**options, **overrides}),
            uri=target_uri,
            configured_max_retries=options.get("max_retries"),
            where=f"the extra of connection {self.deployflow_conn_id!r}",
        )
        if built.warning:
            self.log.warning("%s", built.warning)
        if built.notice:
            self.log.info("%s", built.notice)
        return built.client

    def close(self) -> None:
        """Close the client (pooled connections); the next :meth:`get_conn` builds a new one."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    # ----------------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI's *Test* button: ``(True, what the target answered)`` when the target could be
        reached with the connection's credentials, else ``(False, why)``. The message never holds the
        token.

        It asks the target one read-only question that the target offers, the first of:

        1. the status of the endpoint named by the extra key ``test_endpoint``, if there is one (an
           endpoint the target does not have fails the test);
        2. ``list_endpoints()`` (the MLflow gateway, OpenAI, Databricks and ``local`` answer it);
        3. ``list_deployments()``, for targets without endpoints.

        A refused token, an unreachable host or a target that offers none of these fails the test.
        """
        try:
            client = self.get_conn()
            named = _plain_extra(self.get_connection(self.deployflow_conn_id).extra_dejson).get("test_endpoint")
            if named:
                return _test_endpoint(client, str(named))
            return _test_listing(client)
        except DeploymentError as error:
            return False, redact(str(error))
        except Exception as error:  # the UI shows the message; any failure means "not usable"
            return False, redact(f"{type(error).__name__}: {error}")
        finally:
            self.close()


def _test_endpoint(client: BaseDeploymentClient, endpoint: str) -> tuple[bool, str]:
    status = client.endpoint_status(endpoint)
    if status.state is State.NOT_FOUND:
        return False, redact(f"Connected, but the target has no endpoint {endpoint!r}: {status.reason or 'not found'}")
    reason = f" ({status.reason})" if status.reason else ""
    return True, redact(f"Connected: endpoint {endpoint!r} is {status.state.value}{reason}")


def _test_listing(client: BaseDeploymentClient) -> tuple[bool, str]:
    try:
        return True, f"Connected: the target lists {len(client.list_endpoints())} endpoint(s)"
    except NotImplementedError:  # NotSupportedError too: this target has no endpoints
        pass
    return True, f"Connected: the target lists {len(client.list_deployments())} deployment(s)"


def _secret_extras(extra: Mapping[str, Any]) -> list[str]:
    """The values of the extra's credential keys (:data:`SECRET_EXTRA_KEYS`), form prefixes removed."""
    plain = _plain_extra(extra)
    return [str(plain[key]) for key in SECRET_EXTRA_KEYS if isinstance(plain.get(key), str) and plain[key]]


def _mask(secret: str | None) -> None:
    """Register ``secret`` with Airflow's secret masker (task logs, rendered fields)."""
    if not secret:
        return
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older task SDKs
        return
    mask_secret(secret)


async def _amask(secret: str | None) -> None:
    """:func:`_mask` from an event loop (the synchronous masker may talk to the supervisor)."""
    if not secret:
        return
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # pragma: no cover - older task SDKs
        await asyncio.to_thread(_mask, secret)
        return
    await amask_secret(secret)


async def _aextra(conn: Connection) -> dict[str, Any]:
    """The connection's extra as a dict, read without blocking the event loop."""
    reader = getattr(conn, "aextra_dejson", None)
    if reader is not None:
        return dict(await reader())
    try:
        return dict(json.loads(conn.extra)) if conn.extra else {}
    except (TypeError, ValueError):
        return {}
