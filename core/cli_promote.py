"""``deployflow promote``: :func:`deployflow.promote` from the command line (see :mod:`deployflow.cli`).

Prints the offline gate's checks and each traffic step's checks as small tables while it runs, then the
outcome. Exit status: 0 promoted, 1 rejected or rolled back (or another error), 2 usage mistake, 3
inconclusive (paused: the same command continues it).
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Mapping
from typing import Any

import click

from .cli import (
    EXIT_FAILURE,
    EXIT_OK,
    _check_output_path,
    _client,
    _echo,
    _print_error,
    _required_endpoint_option,
    _target_option,
    cli,
)
from .errors import InvalidInputError

__all__ = ["EXIT_PAUSED", "promote_command"]


def _promotion_table(title: str, checks: list[dict[str, Any]]) -> str:
    """One block of ``deployflow promote`` output: a title line, then one row per check."""
    def shown(value: Any) -> str:
        return "-" if value is None else f"{value:g}" if isinstance(value, (int, float)) else str(value)

    rows = [("check", "value", "bound", "champion", "verdict")]
    rows += [(c["check"], shown(c["value"]), shown(c["bound"]), shown(c["champion"]), c["verdict"]) for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [title] + ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _offline_block(report: Mapping[str, Any]) -> str:
    gate = report.get("offline") or {}
    metrics = gate.get("challenger") or {}
    return _promotion_table(
        f"offline gate: {gate.get('verdict')} ({metrics.get('samples', 0)} rows scored on {report.get('challenger')})",
        list(gate.get("checks") or []),
    )


def _step_block(step: Mapping[str, Any]) -> str:
    split = " ".join(f"{name}={share:g}" for name, share in (step.get("split") or {}).items())
    title = f"step {step['weight']:g}%: {step['verdict']} ({step['samples']} samples; split {split})"
    if step.get("reason"):
        title += f": {step['reason']}"
    return _promotion_table(title, list(step.get("checks") or []))


EXIT_PAUSED = 3


@cli.command("promote")
@_target_option
@_required_endpoint_option
@click.option("--challenger", required=True, help="The deployment (served entity, variant) to promote.")
@click.option("--champion", default=None, help="The member to compare with (default: the one with the most traffic).")
@click.option(
    "--golden", required=True, type=click.Path(exists=True, dir_okay=False, path_type=str),
    help="Golden set with a label column: CSV, Parquet or JSON lines.",
)
@click.option("--label", default="label", show_default=True, help="The golden set's label column.")
@click.option("--check", "checks", multiple=True, metavar="CHECK",
              help="A check such as 'accuracy>=0.9', 'accuracy>=champion-0.01', 'online:p99_ms<=200'; repeat for several.")
@click.option("--steps", default="10,50,100", show_default=True, help="Traffic percents of the steps, ending with 100.")
@click.option("--bake-seconds", default="60", show_default=True, help="Seconds of golden traffic at each step.")
@click.option("--min-samples", default="20", show_default=True, help="Answers a step needs to be judged.")
@click.option("--max-rate", default="20", show_default=True, help="Golden requests per second at most.")
@click.option("--rows-per-request", default="1", show_default=True, help="Golden rows in each request.")
@click.option("--on-inconclusive", type=click.Choice(["pause", "rollback", "fail"]), default="pause", show_default=True,
              help="What too few answers leads to.")
@click.option("--remove-challenger", is_flag=True, help="Delete the challenger after a rollback.")
@click.option("--timeout", default=None, help="Seconds the whole promotion may take.")
@click.option("--record-path", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Where the promotion keeps its progress (default: beside the target's state).")
@click.option("--restart", is_flag=True, help="Start over instead of continuing an unfinished promotion.")
@click.option("--report-path", default=None, type=click.Path(dir_okay=False, path_type=str), callback=_check_output_path,
              help="Also write the report as JSON to this file.")
@click.pass_context
def promote_command(
    ctx: click.Context,
    target: str,
    endpoint: str,
    challenger: str,
    champion: str | None,
    golden: str,
    label: str,
    checks: tuple[str, ...],
    steps: str,
    bake_seconds: str,
    min_samples: str,
    max_rate: str,
    rows_per_request: str,
    on_inconclusive: str,
    remove_challenger: bool,
    timeout: str | None,
    record_path: str | None,
    restart: bool,
    report_path: str | None,
) -> None:
    """Validate --challenger offline on --golden, then shift --endpoint's traffic to it in --steps, each
    judged with golden traffic, and promote it or put the traffic back.

    Prints a table per stage. Exit status: 0 promoted, 1 rejected or rolled back (or another error),
    2 usage, 3 inconclusive (paused: run the same command again to continue).
    """
    from .promotion import PromotionError, PromotionInconclusiveError, parse_check, parse_steps, promote
    from .retry import as_int, as_number

    try:
        parsed_checks = [parse_check(text) for text in checks]
        numbers = {
            "steps": parse_steps(steps),
            "bake_seconds": as_number(bake_seconds, "--bake-seconds", positive=False),
            "min_samples": as_int(min_samples, "--min-samples", minimum=1),
            "max_rate": as_number(max_rate, "--max-rate", positive=True),
            "rows_per_request": as_int(rows_per_request, "--rows-per-request", minimum=1),
            "timeout": None if timeout is None else as_number(timeout, "--timeout", positive=True),
        }
    except InvalidInputError as exc:
        raise click.UsageError(str(exc), ctx) from exc
    printed: list[str] = []

    def show(step: dict[str, Any], report: Mapping[str, Any]) -> None:
        if not printed:
            printed.append("offline")
            _echo(_offline_block(report))
        _echo(_step_block(step))

    code = EXIT_OK
    with _client(target) as client:
        try:
            report = promote(
                client, endpoint, challenger, golden=golden, checks=parsed_checks, champion=champion, label=label,
                on_inconclusive=on_inconclusive, remove_challenger=remove_challenger, record_path=record_path,
                restart=restart, on_step=show, **numbers,
            )
            failure = None
        except PromotionError as exc:
            report, failure = exc.report, exc
    if not printed and report.get("offline"):
        _echo(_offline_block(report))
    reason = f" ({report.get('reason')})" if report.get("reason") else ""
    _echo(f"outcome: {report.outcome}{reason}")
    if report_path is not None:
        Path(report_path).write_text(report.to_json() + "\n", encoding="utf-8")
    if failure is not None:
        _print_error(str(failure))
        code = EXIT_PAUSED if isinstance(failure, PromotionInconclusiveError) else EXIT_FAILURE
    elif report.outcome == "paused":
        code = EXIT_PAUSED
    ctx.exit(code)
