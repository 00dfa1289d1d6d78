"""``codestudio validate`` and ``codestudio render``."""

from __future__ import annotations

from pathlib import Path

import click

from codestudio.cli import output


@click.command()
@click.argument("template", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def validate(template: Path, as_json: bool) -> None:
    """Check TEMPLATE; exit 0 if valid, 2 with every problem listed if not."""
    from codestudio.plan import plan_template

    tpl, state = plan_template(template)
    summary = {
        "template": tpl.id,
        "valid": True,
        "blocks": [b.type for b in tpl.blocks],
        "ports": state.all_ports,
        "code_envs": [e.name for _, e in state.code_envs],
    }
    if as_json:
        output.data(summary, as_json=True)
    else:
        output.line(f"{template}: valid ({len(tpl.blocks)} blocks)")


@click.command()
@click.argument("template", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write Dockerfile, context/, runner.json, kubernetes.yaml, nginx.conf into. "
                   "It must be missing, empty or exactly a previous render (its .codestudio-render.json "
                   "marker lists everything in it, unchanged), which is replaced as a whole; any other "
                   "folder is refused (exit 2) and left untouched.")
@click.option("--project", default="PROJECT", show_default=True, help="Project key used in paths and manifests.")
@click.option("--studio", default=None, help="Studio id used in paths and manifests (default: the template id).")
def render(template: Path, out_dir: Path, project: str, studio: str | None) -> None:
    """Render TEMPLATE into a folder; needs no container tool."""
    from codestudio.errors import UsageError
    from codestudio.render import StudioContext, render_template, write_rendered
    from codestudio.types import PROJECT_KEY_RE, SLUG_RE

    if not PROJECT_KEY_RE.match(project):
        raise UsageError(f"--project {project!r} is not a valid project key")
    if studio is not None and not SLUG_RE.match(studio):
        raise UsageError(f"--studio {studio!r} is not a valid studio id")
    rendered = render_template(template, StudioContext(project_key=project, studio_id=studio))
    write_rendered(rendered, out_dir)
    output.line(str(out_dir))
