"""The ``codestudio`` console script: a thin click layer over the engine.

Commands live one module per noun and are imported only when invoked, so
``codestudio --help`` stays fast (no pydantic, jinja2 or httpx at start-up).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from codestudio import __version__

# command name -> "module:attribute" (modules under codestudio.cli)
COMMANDS: dict[str, tuple[str, str]] = {
    "blocks": ("codestudio.cli.blocks:blocks", "List installed block types."),
    "validate": ("codestudio.cli.render:validate", "Check a template file (exit 0 valid, 2 invalid)."),
    "render": ("codestudio.cli.render:render", "Render a template to Dockerfile, context and configs."),
    "schema": ("codestudio.cli.blocks:schema", "Print the JSON Schema of template files."),
    "base": ("codestudio.cli.base:base", "Build and inspect the base image."),
    "template": ("codestudio.cli.template:template", "Add, list, build and grant templates."),
    "studio": ("codestudio.cli.studio:studio", "Create, start, stop and use Code Studios."),
    "webapp": ("codestudio.cli.webapp:webapp", "Publish templates as replicated webapps behind one URL."),
    "gateway": ("codestudio.cli.gateway:gateway", "Start, stop and inspect the gateway."),
    "admin": ("codestudio.cli.admin:admin", "Manage admins and group memberships."),
    "server": ("codestudio.cli.server:server", "Run the web UI and the REST API."),
    "login": ("codestudio.cli.server:login", "Print a one-time sign-in link for the web UI."),
    "logout": ("codestudio.cli.server:logout", "End web sessions (admins: disable a user)."),
    "token": ("codestudio.cli.server:token", "Personal API tokens for scripts."),
    "project": ("codestudio.cli.project:project", "Create projects and manage their members."),
    "cache": ("codestudio.cli.cache:cache", "Show and clear the download caches of builds."),
    "doctor": ("codestudio.cli.doctor:doctor", "Reconcile studio states with what runs; --fix removes orphan pods."),
    "runtime": ("codestudio.cli.runtime:runtime", "Show or choose where studios run (local or kubernetes)."),
    "cull": ("codestudio.cli.lifecycle:cull", "Stop studios past their idle timeout or lifetime (--dry-run: say which)."),
    "lifecycle": ("codestudio.cli.lifecycle:lifecycle", "Idle and lifetime defaults, running-studio quotas."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # noun not built yet
            raise
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text from the table above: listing commands must not import them.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


#: Set by ``--debug``: errors are shown with their traceback.
_debug = False


def make_cli() -> click.Group:
    @click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="codestudio")
    @click.option(
        "--user",
        envvar="CODESTUDIO_USER",
        default=None,
        help="Who acts (default: the OS user). Only admins may act for others.",
    )
    @click.option(
        "--debug",
        is_flag=True,
        envvar="CODESTUDIO_DEBUG",
        help="Show Python tracebacks of errors (for example of a block plugin's hook that raised).",
    )
    @click.pass_context
    def cli(ctx: click.Context, user: str | None, debug: bool) -> None:
        """codestudio: build Code Studio templates into images and run studios from them."""
        global _debug
        _debug = debug
        ctx.ensure_object(dict)
        ctx.obj["user"] = user

    return cli


def main(argv: list[str] | None = None) -> None:
    from codestudio.errors import CodestudioError

    cli = make_cli()
    try:
        cli.main(args=argv, prog_name="codestudio", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except CodestudioError as exc:
        from codestudio.cli.output import error

        if _debug:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    if os.environ.get("CODESTUDIO_DEBUG_IMPORTS"):
        print(sorted(m for m in sys.modules if m.split(".")[0] in {"pydantic", "jinja2", "httpx", "kubernetes", "rich"}), file=sys.stderr)
