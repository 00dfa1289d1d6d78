"""``codestudio server``: the web UI and the REST API (``/api/v1``) over the engine.

A peer of the CLI: routes authenticate the caller, call the same engine
functions the CLI calls (``codestudio.runtime.studios``,
``codestudio.templates_store``, ``codestudio.access``, ``codestudio.signin``)
and render their results; no business rule lives in a route.

- :mod:`.settings`: where it listens, its origin, the content origin, sign-in mode.
- :mod:`.auth`: who a request is (session cookie, API token, trusted SSO proxy) and CSRF.
- :mod:`.jobs`: long calls (build, start, stop, sync, actions) in background threads,
  with their output captured line by line, polled or followed (server-sent events).
- :mod:`.api`: ``/api/v1`` (FastAPI; OpenAPI at ``/api/v1/openapi.json``).
- :mod:`.ui`: the jinja2 pages; their script (``static/app.js``) calls the API.
- :mod:`.app`: :func:`create_app` and :func:`serve`.

FastAPI, Starlette and uvicorn are imported only here, never by the CLI's
start-up path.
"""
