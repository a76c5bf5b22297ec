"""Undoing steps in a Prefect transaction: a step that created something deletes it, a step that changed
something puts it back, when a later task in the same ``with transaction():`` block fails.

Inside a transaction, ``create_deployment``, ``update_deployment``, ``create_endpoint`` and
``update_endpoint`` read what they are about to change before their first attempt (one extra
``get_deployment`` / ``get_endpoint`` call) and, once they succeed, leave a note in their own task
transaction saying how to undo what they did. If the transaction rolls back, Prefect runs the step's
rollback hook, :func:`undo_step`, which:

* deletes a deployment (or endpoint) that did not exist before the step;
* restores one that existed: ``update_deployment`` with its previous model URI, flavor and the previous
  values of the config keys the step set (``update_endpoint`` with the previous values for an endpoint);
* does nothing for one the step adopted unchanged.

Undoing is idempotent: a deployment already gone counts as deleted, and one already back on its previous
model and config is left alone. Prefect rolls back the steps of a transaction in reverse order, so an
endpoint created after its deployments is deleted before them.

Outside a transaction the steps behave as they always did: no extra call, no hook does anything. A step
that fails is not rolled back by Prefect (only tasks that completed are); what it did stays, as outside a
transaction.

Retries and transactions: Prefect (3.7) rolls a transaction back as soon as any attempt of a task in it
fails, even an attempt that is then retried. The steps before it are undone at that moment, and what
the block does afterwards is not undone any more; a deployflow step that starts in a transaction rolled
back this way logs a WARNING saying so. Where a transient error must not undo the block, run the steps
in it with ``with_options(retries=0)`` and retry the whole flow instead.

A rollback hook has no task retries of its own, so it builds its client as outside a step, with the
transport's retries on, and the step's ``timeout`` is its deadline.
A change it cannot undo (a previous value that was a secret, which no record shows) is logged as a
WARNING and skipped; an undo that fails is logged as an ERROR and does not stop the other steps of the
transaction from being undone. Each undo sends the event ``deployflow.<kind>.rolled-back`` (payload
``undo``: ``"deleted"``, ``"restored"`` or ``"nothing"``) or, when it failed,
``deployflow.<kind>.rollback-failed`` (see :mod:`.events`).

The hook is attached to the running task's own transaction when the step succeeds, not to the task
object, so copies made with ``with_options`` (which in Prefect 3.7 drops a task's ``on_rollback`` hooks)
keep it.

Other steps (promotion) reuse the mechanism: :func:`register_undo` adds an undo function for a new
kind; in the task, :func:`snapshot_before` looks at what is about to change and :func:`stage_undo`, once
the step succeeded, notes how to undo it and attaches :func:`undo_step`.
"""

from __future__ import annotations

from typing import Any, Callable

from deployflow import BaseDeploymentClient, DeploymentError, get_deploy_client
from deployflow.errors import is_not_found
from deployflow.orchestration import config_differences, step_deadline
from deployflow.redaction import redact

from . import events
from ._runtime import TargetLike, run_logger, target_label

__all__ = [
    "UNDO_KEY",
    "Undo",
    "in_transaction",
    "snapshot_before",
    "stage_undo",
    "undo_step",
    "register_undo",
    "undo_deployment",
    "undo_endpoint",
]

#: The name under which a step's own task transaction holds its undo note (``txn.get(UNDO_KEY)``).
UNDO_KEY = "deployflow.undo"

#: ``undo(client, note) -> "deleted" | "restored" | "nothing"``: puts back what one step did.
Undo = Callable[[BaseDeploymentClient, dict[str, Any]], str]

_UNDO: dict[str, Undo] = {}

#: Config keys that steer a call rather than describe the deployment: never restored.
_CALL_KEYS = frozenset({"wait", "wait_timeout", "startup_timeout", "stop_timeout"})


def _own_and_parent() -> tuple[Any, Any] | None:
    """The running task's own transaction and the user's transaction around it, or ``None`` when the
    task does not run inside a ``with transaction():`` block."""
    from prefect.transactions import get_transaction

    own = get_transaction()
    if own is None:
        return None
    parent = own.get_parent()
    return None if parent is None else (own, parent)


def in_transaction() -> bool:
    """Whether the running task is inside a Prefect transaction block."""
    return _own_and_parent() is not None


def _before_key() -> str:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    run_id = context.task_run.id if context is not None else "no-task-run"
    return f"deployflow.before.{run_id}"


def snapshot_before(read: Callable[[], Any]) -> dict[str, Any] | None:
    """Inside a transaction, what the step is about to change, as ``{"exists": bool, "record": ...}``.

    ``read()`` returns the current record or raises a not-found error. It is called on
    the task run's first attempt only; later attempts (retries) get that first look back, so a retry
    that adopts what its first attempt created still knows it did not exist before. Outside a
    transaction ``read`` is not called and the answer is ``None``.
    """
    found = _own_and_parent()
    if found is None:
        return None
    _, parent = found
    if parent.is_rolled_back():
        run_logger().warning(
            "The transaction around this step was rolled back already, by a failed attempt of a task in it "
            "(Prefect rolls a transaction back when any attempt fails, even one that is retried); what this "
            "step does will not be undone"
        )
    key = _before_key()
    kept = parent.get(key, None)
    if kept is not None:
        return kept
    try:
        snapshot: dict[str, Any] = {"exists": True, "record": _restorable(read())}
    except Exception as exc:
        if not is_not_found(exc):
            raise
        snapshot = {"exists": False, "record": None}
    parent.set(key, snapshot)
    return snapshot


def _restorable(record: Any) -> dict[str, Any]:
    """The parts of a record an undo needs: model URI, flavor and config (as the target shows them,
    secrets masked)."""
    if not isinstance(record, dict):
        return {}
    config = record.get("config")
    return {
        "model_uri": record.get("model_uri"),
        "flavor": record.get("flavor"),
        "config": dict(config) if isinstance(config, dict) else {},
    }


def stage_undo(
    kind: str,
    name: str,
    *,
    target: TargetLike,
    before: dict[str, Any] | None,
    action: str,
    config: dict[str, Any] | None = None,
    timeout: float | None = None,
    undo: str | None = None,
    **extra: Any,
) -> None:
    """After a step succeeded inside a transaction, note in its task transaction how to undo it and
    attach :func:`undo_step` to that transaction as a rollback hook.

    ``before`` is what :func:`snapshot_before` returned (``None`` outside a transaction: nothing is
    noted). ``config`` is the config the step passed; only its keys are restored. ``undo`` names the
    registered undo function when it is not the one of ``kind`` (a promotion undoes an endpoint's
    split: kind ``"endpoint"``, undo ``"traffic_split"``). ``extra`` goes into the note unchanged (for
    example ``endpoint``), for the undo function.
    """
    found = _own_and_parent()
    if found is None or before is None:
        return
    own, _ = found
    if undo_step not in own.on_rollback_hooks:
        own.on_rollback_hooks.append(undo_step)
    own.set(
        UNDO_KEY,
        {
            "kind": kind,
            "name": name,
            "target": target,
            "action": action,
            "before": before,
            "keys": sorted(key for key in (config or {}) if key not in _CALL_KEYS),
            "timeout": timeout,
            "undo": undo or kind,
            **extra,
        },
    )


def register_undo(kind: str, undo: Undo) -> None:
    """Make :func:`undo_step` undo notes of ``kind`` with ``undo`` (one function per kind)."""
    _UNDO[kind] = undo


def undo_step(txn: Any) -> None:
    """The rollback hook of deployflow's steps: undo what the step noted in ``txn``; see the module
    docstring. A step that noted nothing (outside a transaction, or an adopted deployment) is left as
    it is."""
    note = txn.get(UNDO_KEY, None)
    if not note:
        return
    kind, name, target = note["kind"], note["name"], note["target"]
    label = target_label(target)
    logger = run_logger()
    undo_name = note.get("undo") or kind
    undo = _UNDO.get(undo_name)
    if undo is None:  # a note without its undo function: say so rather than pretend
        logger.error("Cannot roll back %s %r on %s: no undo is registered for %r", kind, name, label, undo_name)
        return
    try:
        with step_deadline(note.get("timeout")), _undo_client(target) as client:
            outcome = undo(client, note)
    except DeploymentError as error:
        logger.error("Rolling back %s %r on %s failed: %s", kind, name, label, redact(error))
        events.emit_state_event(
            kind, name, events.ROLLBACK_FAILED, target=label,
            payload={"action": note["action"], "reason": str(error), "error_type": type(error).__name__},
        )
        return
    logger.info("Rolled back %s %r on %s: %s", kind, name, label, outcome)
    events.emit_state_event(kind, name, events.ROLLED_BACK, target=label,
                            payload={"action": note["action"], "undo": outcome})


def _undo_client(target: TargetLike) -> BaseDeploymentClient:
    """A client with the transport's retries on: a rollback hook has no task retries."""
    from .block import DeploymentTarget

    if isinstance(target, DeploymentTarget):
        return target.get_client()
    return get_deploy_client(str(target).strip())


def _restore_config(note: dict[str, Any], shown_now: dict[str, Any]) -> dict[str, Any] | None:
    """The previous values of the config keys the step set; ``None`` when there is nothing to put back.
    A previous value that is masked (a secret) cannot be restored: logged and left out."""
    before = note["before"]["record"].get("config") or {}
    restore: dict[str, Any] = {}
    for key in note["keys"]:
        if key not in before:
            continue
        value = before[key]
        if isinstance(value, str) and "***" in value:
            run_logger().warning(
                "Rolling back %s %r: config %r held a secret, which no record shows; it is not restored",
                note["kind"], note["name"], key,
            )
            continue
        restore[key] = value
    if not config_differences(shown_now, restore):
        return None
    return restore


def undo_deployment(client: BaseDeploymentClient, note: dict[str, Any]) -> str:
    """Delete a deployment the step created, or put back the model, flavor and config it had."""
    name = note["name"]
    where = {"endpoint": note["endpoint"]} if note.get("endpoint") is not None else {}
    if not note["before"]["exists"]:
        try:
            client.delete_deployment(name, **where)
        except Exception as exc:
            if not is_not_found(exc):
                raise  # gone already: what the undo wanted
        return "deleted"
    if note["action"] == "adopted":
        return "nothing"
    try:
        now = client.get_deployment(name, **where)
    except Exception as exc:
        if not is_not_found(exc):
            raise
        run_logger().warning("Rolling back deployment %r: it is gone, so there is nothing to restore", name)
        return "nothing"
    previous = note["before"]["record"]
    shown = now.get("config") if isinstance(now.get("config"), dict) else {}
    restore = _restore_config(note, shown)
    same_model = previous.get("model_uri") is None or now.get("model_uri") == previous.get("model_uri")
    if same_model and restore is None:
        return "nothing"  # back where it was (an earlier rollback, or an update that changed nothing)
    changes: dict[str, Any] = {}
    if not same_model:
        changes["model_uri"] = previous["model_uri"]
        if previous.get("flavor"):
            changes["flavor"] = previous["flavor"]
    if restore is not None:
        changes["config"] = restore
    client.update_deployment(name, **changes, **where)
    return "restored"


def undo_endpoint(client: BaseDeploymentClient, note: dict[str, Any]) -> str:
    """Delete an endpoint the step created, or put back the config values the step changed."""
    name = note["name"]
    if not note["before"]["exists"]:
        try:
            client.delete_endpoint(name)
        except Exception as exc:
            if not is_not_found(exc):
                raise
        return "deleted"
    if note["action"] == "adopted":
        return "nothing"
    try:
        now = client.get_endpoint(name)
    except Exception as exc:
        if not is_not_found(exc):
            raise
        run_logger().warning("Rolling back endpoint %r: it is gone, so there is nothing to restore", name)
        return "nothing"
    shown = now.get("config") if isinstance(now.get("config"), dict) else dict(now)
    restore = _restore_config(note, shown)
    if restore is None:
        return "nothing"
    client.update_endpoint(name, config=restore)
    return "restored"


register_undo("deployment", undo_deployment)
register_undo("endpoint", undo_endpoint)
