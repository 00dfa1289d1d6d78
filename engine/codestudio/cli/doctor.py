"""``codestudio doctor [--fix]``: thin over codestudio.runtime.doctor."""

from __future__ import annotations

import sys

import click

from codestudio.cli import output


@click.command()
@click.option("--fix", is_flag=True, help="Also remove orphan pods and start a gateway that running studios need.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def doctor(ctx: click.Context, fix: bool, as_json: bool) -> None:
    """Reconcile studio states with what really runs; list (and with --fix remove) orphan pods.

    Exit 0 when everything is (now) consistent, 1 when problems remain (run with --fix).
    """
    from codestudio.access import identify
    from codestudio.runtime.doctor import doctor as run_doctor

    findings = run_doctor(identify((ctx.obj or {}).get("user")), fix=fix)
    rows = [f.to_dict() for f in findings]
    if as_json:
        output.data({"findings": rows, "healthy": all(f.fixed for f in findings)}, as_json=True)
    elif not findings:
        output.info("everything is consistent: every studio's state matches what runs")
    else:
        output.table(rows, ["what", "subject", "detail", "fixed"], as_json=False)
        if not all(f.fixed for f in findings):
            output.info("run `codestudio doctor --fix` to repair what is not fixed yet")
    sys.exit(0 if all(f.fixed for f in findings) else 1)
