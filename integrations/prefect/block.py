"""The ``DeploymentTarget`` block: where to deploy, with which credentials and client options."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import Field, SecretStr, field_validator, model_validator

from deployflow import BaseDeploymentClient, InvalidInputError, get_deploy_client
from deployflow.redaction import MASK, register_secret

__all__ = ["DeploymentTarget"]

# Option names that hold credentials belong in ``auth_token`` / ``secret_options``, never in the plain
# ``client_options`` a block shows and stores in clear.
_SECRET_NAME = re.compile(r"(?i)token|secret|password|passwd|credential|api_?key|private_?key")


#: The block's secret fields that are passed as client options of the same name.
_SECRET_FIELDS = ("client_secret", "azure_client_secret")


def _credential_names(options: Mapping[Any, Any]) -> list[str]:
    """The option names in ``options`` that look like credentials, sorted."""
    return sorted(str(name) for name in options if _SECRET_NAME.search(str(name)))


class DeploymentTarget(Block):
    """A deployflow target: its URI, its credentials (stored as secrets) and its client options.

    The client is built from the fields alone: nothing is read from or written to ``os.environ``.
    Every secret is registered with deployflow's redaction as soon as the block exists, so it is masked
    in every message, log line and artifact deployflow produces in this process, and in the metadata of
    task results (names, URLs, states, reasons). A model's predictions are data: tasks return them as
    the model answered. A credential-like name in ``client_options`` is refused without the refusal
    quoting its value.

    Retries: inside deployflow's tasks the client is built with the transport's retries off
    (``max_retries=0``); a ``max_retries`` in ``client_options`` is not used there (the task run logs a
    WARNING) because the task's ``retries`` are the only retry level, so a one-request task sends at
    most ``1 + retries`` requests. :meth:`get_client` called by you, outside tasks, keeps the options as
    given. The rule: "Retries in pipeline steps" in :mod:`deployflow.orchestration`.

    Example::

        from deployflow.integrations.prefect import DeploymentTarget

        DeploymentTarget(
            target_uri="local:///srv/deployflow",
            auth_token="s3cr3t-token",           # stored as a secret
            client_options={"timeout": 60},
        ).save("models-local", overwrite=True)

        client = DeploymentTarget.load("models-local").get_client()
        print(client.list_deployments())

    A Databricks service principal (OAuth; the ``databricks`` target needs
    ``pip install 'deployflow[databricks]'`` for it): the client id is a plain option, the secret a field
    of its own, stored as a secret; an Azure service principal's secret goes in ``azure_client_secret``
    (with ``azure_client_id`` and ``azure_tenant_id`` in ``client_options``)::

        DeploymentTarget(
            target_uri="databricks",
            client_options={"host": "https://adb-1234.5.azuredatabricks.net", "client_id": "<client id>"},
            client_secret="<client secret>",
        ).save("databricks-prod", overwrite=True)
    """

    _block_type_name = "deployflow Deployment Target"
    _block_type_slug = "deployflow-deployment-target"
    _description = (
        "A model-serving target for deployflow (local, databricks, sagemaker, an MLflow gateway or any "
        "plugin): its URI, credentials and client options."
    )
    _code_example = """
```python
from deployflow.integrations.prefect import DeploymentTarget

client = DeploymentTarget.load("BLOCK_NAME").get_client()
```"""

    target_uri: str = Field(
        default="local",
        description="The target URI, for example 'local', 'local:///abs/state/dir', 'databricks://prod' "
        "or 'serving+https://host'.",
    )
    auth_token: Optional[SecretStr] = Field(
        default=None,
        description="Bearer token for targets that take the 'auth_token' option (local, serving).",
    )
    client_secret: Optional[SecretStr] = Field(
        default=None,
        description="Databricks: a service principal's OAuth secret, passed as the option 'client_secret' "
        "(with 'client_id' and 'host' in client_options).",
    )
    azure_client_secret: Optional[SecretStr] = Field(
        default=None,
        description="Databricks on Azure: an Azure service principal's secret, passed as the option "
        "'azure_client_secret' (with 'azure_client_id' and 'azure_tenant_id' in client_options).",
    )
    secret_options: SecretDict = Field(
        default_factory=lambda: SecretDict({}),
        description="Other credential options of the client, by option name (for example a password or "
        "an API key); every value is stored as a secret.",
    )
    client_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Plain client options: timeouts, 'home' for the local target, retry settings "
        "(max_retries applies outside deployflow's tasks only: inside them the task's retries are the only "
        "retry level). Credentials go in auth_token or secret_options.",
    )

    @field_validator("target_uri")
    @classmethod
    def _check_target_uri(cls, value: str) -> str:
        if not value or not value.strip():
            raise ValueError("target_uri must not be empty")
        return value.strip()

    @model_validator(mode="before")
    @classmethod
    def _mask_credentials_in_client_options(cls, data: Any) -> Any:
        # pydantic quotes a refused field's input in its error (str, repr, errors(), json()), so the
        # values of credential-like options are masked before the field check below refuses them.
        if not isinstance(data, Mapping):
            return data
        options = data.get("client_options")
        if not isinstance(options, Mapping):
            return data
        leaked = _credential_names(options)
        if not leaked:
            return data
        masked = {name: MASK if str(name) in leaked else value for name, value in options.items()}
        return {**data, "client_options": masked}

    @field_validator("client_options")
    @classmethod
    def _check_client_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        leaked = _credential_names(value)
        if leaked:
            raise ValueError(
                f"client_options {leaked} look like credentials; put them in auth_token or secret_options "
                "(a Databricks client_secret or azure_client_secret in the field of that name), which are "
                "stored as secrets"
            )
        return value

    def block_initialization(self) -> None:
        # Register at once, so the secrets are masked even in errors raised before any client exists.
        for name in ("auth_token", *_SECRET_FIELDS):
            register_secret(getattr(self, name))
        for value in self._secret_options().values():
            register_secret(str(value))

    def client_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The keyword options :meth:`get_client` passes to ``deployflow.get_deploy_client``.

        Secrets are revealed here, so do not log the result. ``overrides`` win over the block's fields.
        A secret given both as a field (``client_secret``, ``azure_client_secret``) and in
        ``secret_options`` raises :class:`deployflow.InvalidInputError` naming it (never its value).
        """
        options: dict[str, Any] = dict(self.client_options)
        if self.auth_token is not None:
            options["auth_token"] = self.auth_token.get_secret_value()
        secret_options = self._secret_options()
        for name in _SECRET_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if name in secret_options:
                raise InvalidInputError(f"{name} is given as a field of the block and in secret_options; give it once")
            options[name] = value.get_secret_value()
        options.update(secret_options)
        options.update(overrides)
        return options

    def _secret_options(self) -> dict[str, Any]:
        value = self.secret_options
        return dict(value.get_secret_value() if isinstance(value, SecretDict) else value or {})

    def get_client(self, **overrides: Any) -> BaseDeploymentClient:
        """Build a deployflow client for :attr:`target_uri` with the block's options plus ``overrides``.

        >>> DeploymentTarget(target_uri="local").get_client()  # doctest: +SKIP
        LocalDeploymentClient(target_uri='local')
        """
        self.block_initialization()  # fields may have been assigned after construction
        return get_deploy_client(self.target_uri, **self.client_kwargs(**overrides))
