"""``codestudio gateway start|stop|status``: thin over codestudio.gateway.process."""

from __future__ import annotations

import click


def _gateway():
    from codestudio.runtime.routes import gateway

    return gateway()


@click.group()
def gateway() -> None:
    """Start, stop and inspect the gateway (nginx serving every running studio)."""


@gateway.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def start(as_json: bool) -> None:
    """Start the gateway, or re-apply the running studios if it already runs."""
    from codestudio.cli import output

    status = _gateway().start()
    if as_json:
        output.data(status.as_dict(), as_json=True)
    else:
        output.info(f"gateway running (pid {status.pid}) on {status.listen}")
        output.line(status.url)


@gateway.command()
def stop() -> None:
    """Stop the gateway."""
    from codestudio.cli import output

    output.info("gateway stopped" if _gateway().stop() else "gateway was not running")


@gateway.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """Whether the gateway runs, where, and with which config."""
    from codestudio.cli import output

    output.data(_gateway().status().as_dict(), as_json=as_json)
