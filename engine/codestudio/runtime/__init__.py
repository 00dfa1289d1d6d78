"""Runtimes: where studios run. ``local`` is podman on this machine.

- :mod:`codestudio.runtime.model` -- studio states (imports nothing from the engine)
- :mod:`codestudio.runtime.studios` -- lifecycle and state (create, start, stop, ...)
- :mod:`codestudio.runtime.local` -- podman: manifest adaptations, `podman run`/`rm`, exec, logs
- :mod:`codestudio.runtime.readiness` -- probes through the published loopback port

This package imports nothing itself, so naming a state
(``codestudio.runtime.model``) never loads the lifecycle.
"""
