"""The gateway: one nginx serving every running studio under /code-studios/.

:mod:`codestudio.gateway.config` renders the nginx config, landing pages and
access URLs (pure functions); :mod:`codestudio.gateway.process` runs nginx
with its own prefix under the data dir and applies new configs safely
(:mod:`codestudio.gateway.apply`).
Import from the submodules: this package stays import-light for the CLI.
"""
