"""The gateway's static pages: each studio's landing page (named by a digest of its inputs) and the error pages."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache

from codestudio.gateway.common import template_env
from codestudio.gateway.studios import StudioRoutes
from codestudio.gateway.webapps import WEBAPP_ERROR_PAGES


def _landing_inputs(studio: StudioRoutes) -> dict:
    return {
        "project": studio.project_key,
        "studio": studio.studio_id,
        "owner": studio.owner,
        "tabs": [
            {"label": r.label, "href": f"{r.port}/", "port": r.port}
            for r in sorted(studio.ports, key=lambda r: r.port)
            if r.listed
        ],
        "actions": [{"name": n, "label": lbl} for n, lbl in studio.actions],
    }


def _landing_html(studio: StudioRoutes) -> str:
    return template_env().get_template("landing.html.j2").render(**_landing_inputs(studio))


@cache
def _landing_template_digest() -> bytes:
    source, _, _ = template_env().loader.get_source(template_env(), "landing.html.j2")
    return hashlib.sha256(source.encode()).digest()


def landing_digest(studio: StudioRoutes) -> str:
    """Names the studio's landing page: a digest of the page's inputs and template, so a
    rejected config never changes what the running one serves, and an apply renders
    only pages it has not written yet."""
    # repr() of a tuple of str, int and bool is unambiguous, and cheaper than JSON.
    inputs = (
        studio.project_key,
        studio.studio_id,
        studio.owner,
        tuple((r.port, r.label) for r in sorted(studio.ports, key=lambda r: r.port) if r.listed),
        studio.actions,
    )
    return hashlib.sha256(_landing_template_digest() + repr(inputs).encode()).hexdigest()[:16]


def landing_file(studio: StudioRoutes) -> str:
    """Path of the studio's landing page, relative to the html dir's root."""
    return f"/landing/{landing_digest(studio)}.html"


def landing_pages(studios: Sequence[StudioRoutes]) -> dict[str, str]:
    """``{path relative to the html dir: HTML}`` for every studio's landing page."""
    return {landing_file(s).lstrip("/"): _landing_html(s) for s in studios}


ERROR_PAGES = {
    401: ("Sign-in needed", "This studio is only open to its owner. Open the link printed by "
          "<code>codestudio studio url STUDIO</code> to get in."),
    403: ("Link invalid or expired", "This access link is not valid any more. Ask for a new one with "
          "<code>codestudio studio url STUDIO</code>."),
    404: ("Not found", "Nothing is served here. Is the studio running? "
          "<code>codestudio studio status STUDIO</code> lists its tabs."),
    502: ("Studio not answering", "The studio does not answer on this port: it may still be starting, "
          "or the server behind this tab stopped. <code>codestudio studio logs STUDIO</code> shows why."),
    504: ("Studio timed out", "The studio did not answer in time."),
}


def error_pages() -> dict[str, str]:
    """``{path relative to the html dir: HTML}`` for the gateway's own error responses."""
    template = template_env().get_template("error.html.j2")
    from markupsafe import Markup

    pages = {
        f"_codestudio/errors/{code}.html": template.render(code=code, title=title, text=Markup(text))
        for code, (title, text) in ERROR_PAGES.items()
    }
    pages.update({
        f"_codestudio/errors/webapp-{code}.html": template.render(code=code, title=title, text=Markup(text))
        for code, (title, text) in WEBAPP_ERROR_PAGES.items()
    })
    return pages
