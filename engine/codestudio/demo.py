"""``python -m codestudio.demo TEMPLATE`` (what ``make demo`` runs): from a template file to a URL.

Builds the base image if needed, adds and builds the template, creates the
project ``DEMO`` (owned by the current user) unless it exists, and the
studio ``demo`` in it for the current user, starts it (the
gateway starts with it) and prints the owner's URL, then starts the web UI
(``codestudio server`` in the background) and prints a sign-in link for it.
Re-running it reuses
the studio: a running one whose image is current is left alone, otherwise
it is (re)started.
"""

from __future__ import annotations

import argparse
import sys

PROJECT = "DEMO"
NAME = "demo"


def run(template_file: str, *, project: str = PROJECT, name: str = NAME, timeout: float = 600) -> tuple[str, str]:
    """Returns (studio id, owner URL)."""
    from codestudio.access import identify
    from codestudio.images import build_base
    from codestudio.projects import ensure_project
    from codestudio.runtime import studios as rt
    from codestudio.templates_store import add_template, build_template

    def say(msg: str) -> None:
        print(f"==> {msg}", file=sys.stderr, flush=True)

    who = identify()
    say("base image")
    base = build_base()
    say(f"base image {base.image} ({base.outcome})")
    stored, new = add_template(who, template_file)
    say(f"template {stored.id} version {stored.version} ({'stored' if new else 'unchanged'})")
    result = build_template(stored.id)
    say(f"image {result.image} ({result.outcome})")
    existing = [s for s in rt.list_studios(all_users=True) if s.project == project and s.name == name]
    if existing:
        studio = existing[0]
        if studio.template_id != stored.id:
            say(f"studio {studio.id} uses template {studio.template_id}; deleting it to use {stored.id}")
            rt.delete_studio(who, studio.id, force=True)
            existing = []
    if not existing:
        _, created = ensure_project(who, project)
        if created:
            say(f"created project {project} for {who.name}")
        studio = rt.create_studio(who, project, name, stored.id)
        say(f"created studio {studio.id} in {project}")
    studio = rt.refresh(rt.get_studio(studio.id))
    if studio.state == rt.RUNNING and studio.image == result.image:
        say(f"studio {studio.id} is already running the current image")
    elif studio.state == rt.RUNNING:
        say(f"restarting studio {studio.id} on the new image")
        rt.restart_studio(who, studio.id, timeout=timeout)
    else:
        say(f"starting studio {studio.id}")
        rt.start_studio(who, studio.id, timeout=timeout)
    return studio.id, rt.access_url(who, studio.id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codestudio.demo", description=__doc__.splitlines()[0])
    parser.add_argument("template", help="template file, e.g. examples/jupyter-lab-template.yaml")
    parser.add_argument("--project", default=PROJECT)
    parser.add_argument("--name", default=NAME)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for readiness")
    args = parser.parse_args(argv)
    from codestudio.errors import CodestudioError

    try:
        studio_id, url = run(args.template, project=args.project, name=args.name, timeout=args.timeout)
    except CodestudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    print(
        "\nYour studio is running. Open this URL in a browser (valid for 10 minutes;\n"
        f"get a new one with: .venv/bin/codestudio studio url {studio_id}):\n",
        file=sys.stderr,
    )
    print(url, flush=True)
    try:
        signin_url, pid = web_ui()
    except CodestudioError as exc:
        print(f"\nwarning: the web UI did not start: {exc}", file=sys.stderr)
        return 0
    print(
        "\nThe web UI runs too (server pid {pid}; stop it with: kill {pid}). Sign in with this one-time link\n"
        "(valid for 10 minutes; get a new one with: .venv/bin/codestudio login):\n".format(pid=pid),
        file=sys.stderr,
    )
    print(signin_url, flush=True)
    return 0


def web_ui() -> tuple[str, int]:
    """Start ``codestudio server`` in the background (unless it runs); (sign-in link, server pid)."""
    from codestudio import signin
    from codestudio.access import identify
    from codestudio.home import data_dir
    from codestudio.server.process import ensure_server
    from codestudio.store import Store

    ui_url, pid = ensure_server(data_dir())
    _user, key = signin.new_link_key(identify(), store=Store.default())
    return f"{ui_url}/signin?key={key}", pid


if __name__ == "__main__":
    sys.exit(main())
