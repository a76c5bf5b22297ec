"""The ``promote`` task: :func:`deployflow.promote` as a Prefect step, undone by a transaction.

Inside ``with transaction():`` a promotion that succeeded is put back when a later task of the block
fails: through the steps' shared rollback hook (:mod:`.rollback`), :func:`restore_split` sets the
endpoint's traffic split back to the one the promotion found and removes the promotion's record (so
running the flow again promotes afresh); the events ``deployflow.endpoint.rolled-back`` (payload
``action: "promote"``) or ``...rollback-failed`` say how it went.
The challenger itself is deleted by the rollback of the ``create_deployment`` task that created it in
the same transaction: Prefect undoes the tasks of a block in reverse order, so the traffic is off the
challenger before it goes.

Outside a transaction the task does exactly what :func:`deployflow.promote` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal

from prefect import task
from prefect.input import RunInput

from deployflow import BaseDeploymentClient, PromotionError
from deployflow import promote as _promote
from deployflow.redaction import redact

from . import rollback
from ._runtime import TargetLike, in_run, open_client, run_logger, scrub_errors, slug, target_label
from .retries import step_options

__all__ = ["promote", "restore_split", "PromotionApproval", "report_markdown"]

OnInconclusive = Literal["pause", "rollback", "fail"]


class PromotionApproval(RunInput):
    """What a person answers at the gate before full traffic: ``approve`` true to go on."""

    approve: bool = False


@task(name="promote", **step_options())
@scrub_errors
def promote(
    target: TargetLike,
    endpoint: str,
    challenger: str,
    *,
    golden: Any,
    checks: Iterable[str] = (),
    champion: str | None = None,
    label: str = "label",
    steps: Iterable[float] | str = (10, 50, 100),
    bake_seconds: float = 60.0,
    min_samples: int = 20,
    max_rate: float = 20.0,
    on_inconclusive: OnInconclusive = "pause",
    remove_challenger: bool = False,
    timeout: float | None = None,
    record_path: str | None = None,
    approval: bool = False,
    approval_timeout: float = 3600.0,
) -> dict[str, Any]:
    """Promote ``challenger`` on ``endpoint`` with :func:`deployflow.promote` (same arguments).

    With ``approval=True`` the flow run pauses before the step to 100% (``pause_flow_run`` waiting for
    a :class:`PromotionApproval`, up to ``approval_timeout`` seconds); ``approve: false`` stops the
    promotion there with outcome ``paused``. A markdown artifact shows every stage and check.

    Returns ``{"outcome", "reason", "endpoint", "challenger", "champion", "split", "original_split",
    "steps": [{"weight", "verdict", "samples"}], "record_path"}``. A rejected, rolled back or (with
    ``on_inconclusive="fail"``) inconclusive promotion fails the task with its
    :class:`deployflow.PromotionError`. Retried only on retryable errors; a retry resumes the ramp.

    Example::

        from prefect import flow
        from prefect.transactions import transaction
        from deployflow.integrations.prefect import create_deployment
        from deployflow.integrations.prefect.promotion import promote

        @flow
        def release():
            with transaction():
                create_deployment("local", "churn-v2", "python:/srv/models/churn.py:v2")
                promote("local", "churn", "churn-v2", golden="/data/golden.csv",
                        checks=["accuracy>=champion-0.01"], approval=True)
                publish_release_notes()   # if this fails, churn's traffic goes back to the champion
    """
    logger = run_logger()
    label_text = target_label(target)
    with open_client(target) as client:
        path = os.fspath(record_path) if record_path is not None else None
        approve = _ask_for_approval(endpoint, challenger, approval_timeout) if approval else None
        try:
            report = _promote(
                client, endpoint, challenger, golden=golden, checks=list(checks), champion=champion, label=label,
                steps=steps, bake_seconds=bake_seconds, min_samples=min_samples, max_rate=max_rate,
                on_inconclusive=on_inconclusive, remove_challenger=remove_challenger, timeout=timeout,
                record_path=path, approve=approve,
            )
        except PromotionError as error:
            _artifact(error.report, label_text)
            raise
        if path is None:
            from deployflow.promotion import default_record_path

            path = str(default_record_path(client, endpoint, challenger))
    _artifact(report, label_text)
    if report.outcome == "paused":
        logger.warning("Promotion of %r on %r paused: %s", challenger, endpoint, report.get("reason"))
    else:
        logger.info("Promotion of %r on %r: %s", challenger, endpoint, report.outcome)
    if report.outcome == "promoted":
        _stage_restore(target, endpoint, challenger, report["original_split"], path)
    return {
        "outcome": report.outcome,
        "reason": report.get("reason"),
        "endpoint": endpoint,
        "challenger": challenger,
        "champion": report.get("champion"),
        "split": report.get("split"),
        "original_split": report.get("original_split"),
        "steps": [{"weight": s["weight"], "verdict": s["verdict"], "samples": s["samples"]} for s in report.steps],
        "record_path": path,
    }


def _ask_for_approval(endpoint: str, challenger: str, timeout: float) -> Any:
    def approve(plan: dict[str, Any], report: Any) -> bool:
        from prefect.flow_runs import pause_flow_run

        run_logger().info(
            "Waiting for approval to give %r %g%% of %r (PromotionApproval input)", challenger, plan["weight"], endpoint
        )
        answer = pause_flow_run(wait_for_input=PromotionApproval, timeout=int(timeout), key=slug("promote", endpoint, challenger))
        return bool(answer.approve)

    return approve


def _stage_restore(target: TargetLike, endpoint: str, challenger: str, split: dict[str, float], path: str) -> None:
    """Inside a transaction, note how to put the traffic back (:mod:`.rollback`: undone as the steps
    before it are, by :func:`restore_split`)."""
    rollback.stage_undo(
        "endpoint", endpoint, target=target, before={"exists": True, "split": split}, action="promote",
        undo="traffic_split", endpoint=endpoint, challenger=challenger, split=split, record_path=path,
    )


def restore_split(client: BaseDeploymentClient, note: dict[str, Any]) -> str:
    """The undo of a promotion: set the endpoint's split back to the one the promotion found and remove
    the promotion's record, so running it again starts afresh."""
    client.set_traffic_split(note["endpoint"], note["split"])
    try:
        os.unlink(note["record_path"])
    except FileNotFoundError:
        pass
    return "restored"


rollback.register_undo("traffic_split", restore_split)


def report_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: the outcome, then one table row per check of each stage."""
    lines = [
        f"**{report.get('challenger')}** on **{report.get('endpoint')}**: {report.get('outcome')}"
        + (f" ({report.get('reason')})" if report.get("reason") else ""),
        "",
        "| stage | verdict | samples | check | value | bound | champion | check verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    stages = []
    if report.get("offline"):
        gate = report["offline"]
        stages.append(("offline", gate.get("verdict"), (gate.get("challenger") or {}).get("samples"), gate.get("checks") or []))
    for step in report.get("steps") or []:
        stages.append((f"{step['weight']:g}%", step.get("verdict"), step.get("samples"), step.get("checks") or []))
    for stage, verdict, samples, checks in stages:
        for check in checks or [{"check": "-", "value": None, "bound": None, "champion": None, "verdict": "-"}]:
            cells = [stage, verdict, samples, check["check"], check["value"], check["bound"], check["champion"], check["verdict"]]
            lines.append("| " + " | ".join("-" if cell is None else str(cell) for cell in cells) + " |")
    return redact("\n".join(lines))


def _artifact(report: dict[str, Any], label_text: str) -> None:
    if not in_run():
        return
    from prefect.artifacts import create_markdown_artifact

    try:
        create_markdown_artifact(
            markdown=report_markdown(report),
            key=slug("deployflow", "promotion", str(report.get("endpoint")), str(report.get("challenger"))),
            description=redact(f"Promotion on {label_text}"),
        )
    except Exception as error:  # noqa: BLE001 - an artifact must not fail the promotion
        run_logger().warning("Could not write the promotion artifact: %s", redact(error))
