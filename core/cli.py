"""The ``deployflow`` command line: MLflow's ``mlflow deployments`` commands, for every target.

The fourteen commands of ``mlflow deployments`` keep their names, flags and printed output, so scripts
written for MLflow keep working with ``deployflow`` in its place::

    deployflow create -t local --name iris -m ./model -C port=5001
    deployflow predict -t local --name iris -I rows.csv -O predictions.json
    deployflow delete -t local --name iris

``deployflow targets`` lists the installed targets and ``deployflow help -t <target>`` shows one
target's URI forms and config keys. ``deployflow promote`` runs :func:`deployflow.promote` and exits
with 0 (promoted), 1 (rejected or rolled back) or 3 (inconclusive: paused).

How failures look, for people and for scripts:

* a usage mistake (a missing or malformed option) prints one ``Error: ...`` line and exits with 2;
* a :class:`~deployflow.DeploymentError` prints ``Error: <message>`` and exits with 1;
* a file that cannot be read or written prints what went wrong and the path; a bad ``--input-path``
  or ``--output-path`` is a usage mistake (exit 2, checked before anything is sent to the target),
  other file errors exit with 1;
* any other exception prints ``Error: <type>: <message>`` and exits with 1;
* a traceback is printed only with ``deployflow --debug`` or ``DEPLOYFLOW_DEBUG=1``.

Everything printed for people passes through :func:`deployflow.redaction.redact`. Prediction and
explanation output is data and is written as the target returned it.

Plugins written for older versions of the interface keep working: an argument that a plugin's method
does not declare (``endpoint``, ``config``) is left out of the call. Leaving it out silently is only
safe when the user did not ask for it, so giving ``--endpoint`` or ``-C`` to such a method is an error
rather than being ignored.

pandas is imported only by the commands that read input files (``predict``, ``explain``), so
``deployflow --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NoReturn, Sequence

import click

from ._extras import require
from . import __version__
from .api import get_deploy_client, run_local as _run_local, target_help as _target_help
from .errors import DeploymentError, InvalidInputError, NotSupportedError
from .redaction import redact
from .registry import list_targets
from .retry import TRUE_WORDS

__all__ = [
    "main",
    "cli",
    "create_deployment",
    "update_deployment",
    "delete_deployment",
    "list_deployment",
    "get_deployment",
    "target_help",
    "run_local",
    "predict",
    "explain",
    "create_endpoint",
    "update_endpoint",
    "delete_endpoint",
    "list_endpoints",
    "get_endpoint",
    "list_installed_targets",
    "promote_command",
    "read_input",
]

DEBUG_ENV = "DEPLOYFLOW_DEBUG"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Keys that mark a JSON file as an already formed scoring request (the MLflow scoring protocol).
_SCORING_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")

# click >= 8.2 raises this when a group runs without arguments; its message is the whole help text.
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())

# What a user types to give each optional plugin argument, for error messages.
_FLAG_OF_ARGUMENT = {"endpoint": "--endpoint", "config": "-C/--config"}


# --------------------------------------------------------------------------------------------------
# Error reporting
# --------------------------------------------------------------------------------------------------


class _RunState:
    """What the group callback learns that the error handler needs after the context is gone."""

    def __init__(self) -> None:
        self.debug = _debug_from_env()


def _debug_from_env() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in TRUE_WORDS


def _one_line(text: str) -> str:
    """Join a possibly multi-line message into one line, so each error is exactly one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _print_error(message: str) -> None:
    click.echo(f"Error: {_one_line(redact(message))}", err=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DeploymentError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        # "No such file or directory: 'out/x.json'" says it all; the class name adds nothing.
        paths = " -> ".join(repr(os.fsdecode(name)) for name in (exc.filename, exc.filename2) if name is not None)
        return f"{exc.strerror}: {paths}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _usage_message(exc: click.UsageError) -> str:
    message = exc.format_message()
    ctx = exc.ctx
    if ctx is not None and not isinstance(exc, _NO_ARGS_IS_HELP):
        help_names = ctx.help_option_names
        if help_names:
            message = f"{_one_line(message)} (see '{ctx.command_path} {help_names[-1]}')"
    return message


def _exit_code_for(exc: BaseException, debug: bool) -> int:
    """Print what ``exc`` means for the user and return the exit status to use."""
    if isinstance(exc, click.UsageError):
        _print_error(_usage_message(exc))
        return EXIT_USAGE
    if isinstance(exc, click.exceptions.Abort):
        interrupted = isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
        click.echo("Aborted.", err=True)
        return EXIT_INTERRUPTED if interrupted else EXIT_FAILURE
    if debug:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        click.echo(redact(text).rstrip("\n"), err=True)
    if isinstance(exc, click.ClickException):
        _print_error(exc.format_message())
        return exc.exit_code
    _print_error(_describe(exc))
    return EXIT_FAILURE


class _ReportingMixin:
    """``main`` for click commands and groups that turns every failure into one ``Error:`` line."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        parent = super()
        if not standalone_mode:
            # The caller handles errors itself (click's documented contract for standalone_mode).
            return parent.main(  # type: ignore[misc]
                args, prog_name, complete_var, False, windows_expand_args, **extra
            )
        state = _RunState()
        extra.setdefault("obj", state)
        try:
            result = parent.main(  # type: ignore[misc]
                args, prog_name, complete_var, False, windows_expand_args, **extra
            )
        except Exception as exc:  # every failure is reported the same way, whatever raised it
            sys.exit(_exit_code_for(exc, state.debug))
        # click returns an exit code for --help, --version and ctx.exit(); a finished command returns None.
        sys.exit(result if isinstance(result, int) else EXIT_OK)


class DeployflowCommand(_ReportingMixin, click.Command):
    """A click command that reports failures the deployflow way when invoked on its own."""


class DeployflowGroup(_ReportingMixin, click.Group):
    """The ``deployflow`` group: one-line errors, and the installed targets at the end of ``--help``."""

    command_class = DeployflowCommand

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        try:
            names = list_targets()  # reads package metadata only; imports no target
        except Exception as exc:  # broken package metadata must not break --help
            listing = f"unknown ({type(exc).__name__}: {redact(exc)})"
        else:
            listing = (
                ", ".join(names)
                if names
                else "none. Install a plugin that registers the 'deployflow.targets' entry point group."
            )
        with formatter.section("Installed targets"):
            formatter.write_text(listing)
        super().format_epilog(ctx, formatter)


# --------------------------------------------------------------------------------------------------
# Options shared by several commands
# --------------------------------------------------------------------------------------------------


def _parse_config(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    """Turn repeated ``-C name=value`` into a dict: split at the first ``=``, refuse repeated names."""
    config: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(
                f"{item!r} is not of the form NAME=VALUE (for example -C instance_count=2)", ctx, param
            )
        if name in config:
            raise click.BadParameter(f"config name {name!r} is given more than once", ctx, param)
        config[name] = value
    return config


_target_option = click.option(
    "--target",
    "-t",
    required=True,
    metavar="URI",
    help="Deployment target URI, such as 'local', 'databricks://profile' or 'https://host:5000'. "
    "Run `deployflow targets` to list installed targets and `deployflow help -t <target>` for a "
    "target's URI forms and config options.",
)
_name_option = click.option("--name", "name", required=True, help="Name of the deployment.")
_optional_endpoint_option = click.option(
    "--endpoint", help="Name of the endpoint the deployment belongs to (for targets that have endpoints)."
)
_required_endpoint_option = click.option("--endpoint", required=True, help="Name of the endpoint.")
_flavor_option = click.option(
    "--flavor", "-f", help="Model flavor to deploy; the target chooses one when it is not given."
)
_model_uri_option = click.option(
    "--model-uri",
    "-m",
    required=True,
    metavar="URI",
    help="URI of the model to deploy: a local path or any URI the target understands "
    "(see `deployflow help -t <target>`).",
)
_config_option = click.option(
    "--config",
    "-C",
    metavar="NAME=VALUE",
    multiple=True,
    callback=_parse_config,
    help="Target-specific configuration, as -C name=value; repeat for several. The value is "
    "everything after the first '='. See `deployflow help -t <target>` for the names a target knows.",
)
_endpoint_config_option = click.option(
    "--config",
    "-C",
    metavar="NAME=VALUE",
    multiple=True,
    callback=_parse_config,
    help="Target-specific configuration of the endpoint, as -C name=value; repeat for several.",
)


def _check_output_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse an output file that cannot be created, before anything is scored for it."""
    if value is None:
        return None
    directory = os.path.dirname(value) or "."
    if not os.path.exists(directory):
        problem = f"the directory {directory!r} does not exist"
    elif not os.path.isdir(directory):
        problem = f"{directory!r} is not a directory"
    elif not os.path.exists(value) and not os.access(directory, os.W_OK | os.X_OK):
        problem = f"the directory {directory!r} is not writable"
    else:
        return value
    raise click.BadParameter(f"Cannot write {value!r}: {problem}.", ctx, param)


# path_type=str: callers may pass pathlib.Path objects (MLflow's CLI tests do); commands get strings.
_input_option = click.option(
    "--input-path",
    "-I",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=str),
    help="Input file: JSON, or CSV when the name ends in .csv (see --content-type).",
)
_output_option = click.option(
    "--output-path",
    "-O",
    type=click.Path(dir_okay=False, writable=True, path_type=str),
    callback=_check_output_path,
    help="File to write the results to, as JSON. Without it the JSON is printed to stdout.",
)
_content_type_option = click.option(
    "--content-type",
    type=click.Choice(["json", "csv"], case_sensitive=False),
    default=None,
    help="How to read --input-path; by default CSV for a '.csv' file name, JSON otherwise.",
)
_predict_name_option = click.option(
    "--name", "name", help="Name of the deployment. Give exactly one of --name or --endpoint."
)
_predict_endpoint_option = click.option(
    "--endpoint", help="Name of the endpoint. Give exactly one of --name or --endpoint."
)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _echo(text: object = "") -> None:
    """Print text meant for people, with credentials masked."""
    click.echo(redact(text))


def _open_client(target: str) -> Any:
    return get_deploy_client(target)


@contextlib.contextmanager
def _client(target: str) -> Iterator[Any]:
    """The target's client for one command, closed afterwards."""
    client = _open_client(target)
    try:
        yield client
    finally:
        _close(client)


def _close(client: Any) -> None:
    close = getattr(client, "close", None)
    if callable(close):
        close()


def _call(method: Callable[..., Any], *args: Any, **optional: Any) -> Any:
    """Call a plugin method, leaving out optional keyword arguments it does not declare.

    An argument the method does not declare is dropped when the user did not set it (``None`` or an
    empty config), which is what keeps plugins written before ``endpoint`` existed working. When the user
    did set it, dropping it would act on something other than what was asked, so that is an error.
    """
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):  # no signature to read (a C function): pass everything
        return method(*args, **optional)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted: dict[str, Any] = {}
    for key, value in optional.items():
        declared = key in parameters and parameters[key].kind is not inspect.Parameter.POSITIONAL_ONLY
        if takes_any or declared:
            accepted[key] = value
        elif value is not None and value != {}:
            owner = getattr(method, "__qualname__", getattr(method, "__name__", "this method"))
            flag = _FLAG_OF_ARGUMENT.get(key, key)
            raise NotSupportedError(
                f"{owner} takes no {key!r} argument (the plugin predates it), so {flag} cannot be used "
                "with this target"
            )
    return method(*args, **accepted)


def _field(record: Any, key: str, fallback: Any) -> Any:
    """``record[key]`` when the plugin returned a mapping with that key, else ``fallback``."""
    if isinstance(record, Mapping) and key in record:
        return record[key]
    return fallback


def _print_record(record: Any) -> None:
    """Print a deployment or endpoint record as ``key: value`` lines, as MLflow does."""
    if isinstance(record, Mapping):
        for key, value in record.items():
            _echo(f"{key}: {value}")
    else:
        _echo(record)
    click.echo("\n")


def _exactly_one_of_name_or_endpoint(name: str | None, endpoint: str | None) -> None:
    if (name is None) == (endpoint is None):
        raise click.UsageError("Give exactly one of --name or --endpoint.")


def _input_kind(path: str, content_type: str | None) -> str:
    if content_type:
        return content_type.lower()
    return "csv" if path.lower().endswith(".csv") else "json"


def _read_text(path: str) -> str:
    """The file's text; :class:`~deployflow.InvalidInputError` naming the line when it is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problem = f"{path} is not UTF-8 text (line {line} holds bytes UTF-8 does not allow); save it as UTF-8"
    raise InvalidInputError(problem)


def read_input(
    path: str | os.PathLike[str], content_type: str | None = None, *, for_endpoint: bool = False
) -> Any:
    """Read a ``predict``/``explain`` input file into what the client method receives.

    * CSV: a pandas DataFrame (``pandas.read_csv``).
    * JSON for a deployment (``--name``): a DataFrame read with ``pandas.read_json``, as MLflow's CLI
      does; except that a JSON object holding a scoring-protocol key (``dataframe_split``,
      ``dataframe_records``, ``instances``, ``inputs``) is already a complete request and is passed as
      it is, because turning it into a table would lose its meaning.
    * JSON for an endpoint (``--endpoint``): the parsed JSON as it is; endpoint inputs are request
      bodies such as ``{"messages": [...]}``, not tables.

    ``path`` is a string or a :class:`pathlib.Path`. The file must be UTF-8 text; a file that is not
    raises :class:`~deployflow.InvalidInputError`, and one that cannot be read raises the
    :class:`OSError`.
    """
    path = os.fspath(path)
    kind = _input_kind(path, content_type)
    text = _read_text(path)
    if kind == "csv":
        pd = require("pandas", "batch", "reading a CSV input file")
        try:
            return pd.read_csv(io.StringIO(text))
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise InvalidInputError(f"Cannot read {path} as CSV: {exc}") from exc

    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}") from exc
    if for_endpoint or (isinstance(parsed, dict) and any(key in parsed for key in _SCORING_KEYS)):
        return parsed

    pd = require("pandas", "batch", "reading a table from a JSON input file")
    try:
        return pd.read_json(io.StringIO(text))
    except ValueError as exc:
        raise InvalidInputError(
            f"Cannot read {path} as a table: {exc}. Give records ([{{\"column\": value}}, ...]), columns "
            "({\"column\": [values]}) or a scoring request such as {\"dataframe_split\": ...}."
        ) from exc


def _to_json_text(result: Any) -> str:
    """The JSON form of what ``predict``/``explain`` returned.

    A :class:`~deployflow.PredictionsResponse` (or MLflow's, also a dict with ``to_json``) writes itself;
    anything else (an old plugin's DataFrame, array or plain value) goes through the numpy- and
    pandas-aware encoder, DataFrames as a list of records as MLflow writes them.
    """
    to_json = getattr(result, "to_json", None)
    if isinstance(result, dict) and callable(to_json):
        text = to_json()
        if isinstance(text, str):
            return text
    from .jsoncodec import dumps_text

    return dumps_text(result)  # the spacing and NaN tokens of json.dumps, as PredictionsResponse writes


def _write_result(result: Any, output_path: str | None) -> None:
    text = _to_json_text(result)
    if output_path:
        try:
            Path(output_path).write_text(text, encoding="utf-8")
        except OSError as exc:  # checked before scoring; this is the disk or a race, not the argument
            raise click.ClickException(f"Cannot write the results to {output_path!r}: {exc.strerror or exc}") from exc
    else:
        click.echo(text)


def _read_input_argument(path: str, content_type: str | None, for_endpoint: bool) -> Any:
    """:func:`read_input` for the ``--input-path`` option: a file that cannot be read is a bad argument."""
    try:
        return read_input(path, content_type, for_endpoint=for_endpoint)
    except OSError as exc:
        ctx = click.get_current_context()
        param = next((p for p in ctx.command.params if p.name == "input_path"), None)
        raise click.BadParameter(f"Cannot read {path!r}: {exc.strerror or exc}.", ctx, param) from exc


def _configure_debug_logging(ctx: click.Context) -> None:
    """Send deployflow's debug logs to stderr for this invocation."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("deployflow")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)

    ctx.call_on_close(restore)


# --------------------------------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------------------------------


@click.group(
    "deployflow",
    cls=DeployflowGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--debug",
    is_flag=True,
    default=False,
    help=f"Print tracebacks and debug logs (also: {DEBUG_ENV}=1).",
)
@click.version_option(__version__, "--version", prog_name="deployflow")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Deploy models to any target, wait until they serve, and score data against them.

    The commands and flags are those of `mlflow deployments`. Name a target with -t: 'local',
    'databricks', 'openai', 'https://host:5000', or any installed plugin. Run
    `deployflow targets` to see what is installed and `deployflow help -t <target>` for one target's
    URI forms and -C config options.
    """
    state = ctx.ensure_object(_RunState)
    state.debug = state.debug or debug or _debug_from_env()
    if state.debug:
        _configure_debug_logging(ctx)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command("create")
@_optional_endpoint_option
@_config_option
@_name_option
@_target_option
@_model_uri_option
@_flavor_option
def create_deployment(
    flavor: str | None, model_uri: str, target: str, name: str, config: dict[str, str], endpoint: str | None
) -> None:
    """Deploy the model at --model-uri to the target as --name.

    Target-specific settings go in -C name=value.
    """
    with _client(target) as client:
        deployment = _call(client.create_deployment, name, model_uri, flavor, config=config, endpoint=endpoint)
    _echo(f"\n{_field(deployment, 'flavor', flavor)} deployment {_field(deployment, 'name', name)} is created")


@cli.command("update")
@_optional_endpoint_option
@_config_option
@_name_option
@_target_option
@click.option(
    "--model-uri",
    "-m",
    default=None,
    metavar="URI",
    help="URI of the new model to serve. Leave out to change only the flavor or the config.",
)
@_flavor_option
def update_deployment(
    flavor: str | None,
    model_uri: str | None,
    target: str,
    name: str,
    config: dict[str, str],
    endpoint: str | None,
) -> None:
    """Update deployment --name: its model, its flavor (which needs --model-uri) and/or its config.

    Target-specific settings go in -C name=value.
    """
    with _client(target) as client:
        result = _call(
            client.update_deployment, name, model_uri=model_uri, flavor=flavor, config=config, endpoint=endpoint
        )
    _echo(f"Deployment {name} is updated (with flavor {_field(result, 'flavor', flavor)})")


@cli.command("delete")
@_optional_endpoint_option
@_config_option
@_name_option
@_target_option
def delete_deployment(target: str, name: str, config: dict[str, str], endpoint: str | None) -> None:
    """Delete deployment --name from the target. Deleting what does not exist is not an error."""
    with _client(target) as client:
        _call(client.delete_deployment, name, config=config, endpoint=endpoint)
    _echo(f"Deployment {name} is deleted")


@cli.command("list")
@_optional_endpoint_option
@_target_option
def list_deployment(target: str, endpoint: str | None) -> None:
    """List the deployments of the target (of --endpoint when given)."""
    with _client(target) as client:
        deployments = _call(client.list_deployments, endpoint=endpoint)
    _echo(f"List of all deployments:\n{deployments}")


@cli.command("get")
@_optional_endpoint_option
@_name_option
@_target_option
def get_deployment(target: str, name: str, endpoint: str | None) -> None:
    """Print the record of deployment --name, one 'key: value' per line."""
    with _client(target) as client:
        record = _call(client.get_deployment, name, endpoint=endpoint)
    _print_record(record)


@cli.command("help")
@_target_option
def target_help(target: str) -> None:
    """Show a target's own help: its URI forms and its -C config options."""
    _echo(_target_help(target))


@cli.command("run-local")
@_config_option
@_name_option
@_target_option
@_model_uri_option
@_flavor_option
def run_local(flavor: str | None, model_uri: str, target: str, name: str, config: dict[str, str]) -> None:
    """Serve the model on this machine through the target's run_local (same options as create)."""
    _run_local(target, name, model_uri, flavor, config)


def _score(
    method: str,
    target: str,
    name: str | None,
    endpoint: str | None,
    input_path: str,
    output_path: str | None,
    content_type: str | None,
) -> None:
    """What `predict` and `explain` share: read the input, call the client's ``method``, write JSON."""
    _exactly_one_of_name_or_endpoint(name, endpoint)
    inputs = _read_input_argument(input_path, content_type, endpoint is not None)
    with _client(target) as client:
        result = _call(getattr(client, method), name, inputs, endpoint=endpoint)
    _write_result(result, output_path)


@cli.command("predict")
@_predict_name_option
@_predict_endpoint_option
@_target_option
@_input_option
@_output_option
@_content_type_option
def predict(
    target: str,
    name: str | None,
    input_path: str,
    output_path: str | None,
    endpoint: str | None,
    content_type: str | None,
) -> None:
    """Score the input file against deployment --name or endpoint --endpoint and write the response as JSON.

    A CSV file, or a JSON file of records or columns, is sent as a table; a JSON file holding
    'dataframe_split', 'dataframe_records', 'instances' or 'inputs' is sent as it is, and so is any JSON
    given with --endpoint.
    """
    _score("predict", target, name, endpoint, input_path, output_path, content_type)


@cli.command("explain")
@_predict_name_option
@_predict_endpoint_option
@_target_option
@_input_option
@_output_option
@_content_type_option
def explain(
    target: str,
    name: str | None,
    input_path: str,
    output_path: str | None,
    endpoint: str | None,
    content_type: str | None,
) -> None:
    """Explain the model's predictions for the input file (for targets that can), as JSON.

    What an explanation holds (feature importances, for instance) depends on the target; see
    `deployflow help -t <target>`. The input file is read as for `predict`.
    """
    _score("explain", target, name, endpoint, input_path, output_path, content_type)


@cli.command("create-endpoint")
@_endpoint_config_option
@_required_endpoint_option
@_target_option
def create_endpoint(target: str, endpoint: str, config: dict[str, str]) -> None:
    """Create endpoint --endpoint on the target. Target-specific settings go in -C name=value."""
    with _client(target) as client:
        record = _call(client.create_endpoint, endpoint, config=config)
    _echo(f"\nEndpoint {_field(record, 'name', endpoint)} is created")


@cli.command("update-endpoint")
@_endpoint_config_option
@_required_endpoint_option
@_target_option
def update_endpoint(target: str, endpoint: str, config: dict[str, str]) -> None:
    """Change the configuration of endpoint --endpoint, given as -C name=value."""
    with _client(target) as client:
        _call(client.update_endpoint, endpoint, config=config)
    _echo(f"\nEndpoint {endpoint} is updated")


@cli.command("delete-endpoint")
@_required_endpoint_option
@_target_option
def delete_endpoint(target: str, endpoint: str) -> None:
    """Delete endpoint --endpoint from the target. Deleting what does not exist is not an error."""
    with _client(target) as client:
        client.delete_endpoint(endpoint)
    _echo(f"\nEndpoint {endpoint} is deleted")


@cli.command("list-endpoints")
@_target_option
def list_endpoints(target: str) -> None:
    """List the endpoints of the target."""
    with _client(target) as client:
        endpoints = client.list_endpoints()
    _echo(f"List of all endpoints:\n{endpoints}")


@cli.command("get-endpoint")
@_required_endpoint_option
@_target_option
def get_endpoint(target: str, endpoint: str) -> None:
    """Print the record of endpoint --endpoint, one 'key: value' per line."""
    with _client(target) as client:
        record = client.get_endpoint(endpoint)
    _print_record(record)


@cli.command("batch-predict")
@_predict_name_option
@_predict_endpoint_option
@_target_option
@click.option(
    "--input-path",
    "-I",
    required=True,
    help="Input: a Parquet, CSV or JSON-lines file (or an fsspec URL when fsspec is installed).",
)
@click.option(
    "--output-path",
    "-O",
    required=True,
    help="Output: a path with a suffix (.parquet, .csv, .jsonl) is one file, made when the job ends; a path ending in / or without a suffix is a directory of numbered parts plus a manifest.",
)
@click.option("--chunk-size", type=click.IntRange(min=1), default=None, help="Rows per request (default 2000).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="Requests in flight at once.")
@click.option("--part-rows", type=click.IntRange(min=1), default=None, help="Rows per output part, in whole chunks (default 100000); the unit a rerun resumes from.")
@click.option("--input-format", type=click.Choice(["parquet", "csv", "jsonl"]), default=None, help="Format of the input when its name does not say.")
@click.option("--output-format", type=click.Choice(["parquet", "csv", "jsonl"]), default=None, help="Format of the output parts when the path's suffix does not say.")
@click.option("--feature-column", "feature_columns", multiple=True, help="An input column sent to the model; repeat for several (default: all).")
@click.option("--keep-column", "keep_columns", multiple=True, help="An input column copied to the output; repeat for several (default: all).")
@click.option("--no-input-columns", is_flag=True, help="Copy no input column to the output, only predictions.")
@click.option("--prediction-column", default="prediction", show_default=True, help="Name of a single-output prediction column.")
@click.option("--on-bad-rows", type=click.Choice(["raise", "isolate"]), default="raise", show_default=True, help="Stop at rejected rows, or isolate them (into <output>.errors.jsonl beside a file, <output>/_errors/ in a directory).")
@click.option("--overwrite", is_flag=True, help="Discard what the output holds and start over.")
@click.option("--no-resume", is_flag=True, help="Refuse to continue a job found in the output.")
@click.option("--max-chunk-retries", type=click.IntRange(min=0), default=3, show_default=True, help="Retries of a chunk that fails with a retryable error.")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: when stderr is a terminal).")
def batch_predict_command(
    target: str,
    name: str | None,
    endpoint: str | None,
    input_path: str,
    output_path: str,
    chunk_size: int | None,
    concurrency: int | None,
    part_rows: int | None,
    input_format: str | None,
    output_format: str | None,
    feature_columns: tuple[str, ...],
    keep_columns: tuple[str, ...],
    no_input_columns: bool,
    prediction_column: str,
    on_bad_rows: str,
    overwrite: bool,
    no_resume: bool,
    max_chunk_retries: int,
    progress: bool | None,
) -> None:
    """Score a file against deployment --name or endpoint --endpoint, chunk by chunk, into --output-path.

    Rerun the same command after an interruption and it resumes where it stopped. Prints the summary as JSON.
    """
    from .batch import batch_predict

    _exactly_one_of_name_or_endpoint(name, endpoint)
    if no_input_columns and keep_columns:
        raise click.UsageError("Give --keep-column or --no-input-columns, not both.")
    with _client(target) as client:
        summary = batch_predict(
            client,
            input_path,
            deployment_name=name,
            endpoint=endpoint,
            output=output_path,
            input_format=input_format,
            output_format=output_format,
            chunk_size=chunk_size,
            concurrency=concurrency,
            part_rows=part_rows,
            feature_columns=list(feature_columns) or None,
            keep_columns=[] if no_input_columns else (list(keep_columns) or None),
            prediction_column=prediction_column,
            on_bad_rows=on_bad_rows,
            overwrite=overwrite,
            resume=not no_resume,
            max_chunk_retries=max_chunk_retries,
            progress=progress,
        )
    _echo(json.dumps(summary.to_dict(), indent=2))


@cli.command("targets")
def list_installed_targets() -> None:
    """List the installed targets, one per line (imports none of them)."""
    for name in list_targets():
        click.echo(name)


# Registered on ``cli`` when imported; a module of its own, as it is the one command that is not MLflow's.
from .cli_promote import EXIT_PAUSED, promote_command  # noqa: F401


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the ``deployflow`` command line (the console script's entry point)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="deployflow")
    raise SystemExit(EXIT_OK)  # not reached: main() always exits; keeps the NoReturn promise honest
