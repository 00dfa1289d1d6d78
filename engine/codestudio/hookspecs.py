"""Every hook a block can implement: the contract between the engine and blocks.

How hooks are called
--------------------

Blocks apply in template order. For block *n* the engine calls the **block
hooks** below on the plugin that owns *n*'s type only (a plugin never has to
check ``block.type``), always with keyword arguments, and appends what they
return to the one accumulating :class:`~codestudio.blockapi.BuildState`.
Block *n* therefore sees everything blocks 1..*n-1* produced, and nothing of
the blocks after it.

The **broadcast hook** ``register_code_env`` reaches every block of the
template, whichever order the code env and the IDE appear in: when block *n*
announces a code env, every earlier block hears of it; and every code env
announced before block *n* is announced to *n* once *n* has applied. The
steps it returns join the group of whichever of the two blocks comes later,
so an IDE's install layer does not change when a later code env changes.

Order of the block hooks for one block: ``contribute_dockerfile``,
``contribute_stage``, ``contribute_code_env``, ``contribute_entrypoint``, ``contribute_action``,
``contribute_starter_files``, ``contribute_sync``, ``contribute_env``,
``contribute_ports``, ``adjust_probe``, ``adjust_pod``, ``adjust_lifecycle``, then ``register_code_env`` as above.
Once every block has applied, ``validate_block`` is called for each block
with the final state. Entry-point load order never matters: only the
template's order does.

Arguments are domain nouns: ``block`` is the
:class:`~codestudio.blockapi.BlockInstance` being applied (its validated
``params`` included), ``state`` the build state so far. Hooks may add
arguments later; accept only those you use (pluggy passes just those).
"""

from __future__ import annotations

import pluggy

from codestudio import PROJECT_NAME

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def contribute_dockerfile(block, state):
    """Return the Dockerfile steps of this block's layer group.

    :param block: the block being applied.
    :param state: the build state so far (read it, do not mutate it).
    :return: a list of :class:`~codestudio.blockapi.Step` (``Run``, ``Copy``,
        ``Env``, ``Workdir``, ``Raw``) in the order they run, or ``None`` to
        contribute nothing. Steps are emitted in one group, after every
        earlier block's group.
    """


@hookspec
def contribute_stage(block, state):
    """Let this block's steps build in a stage of their own, in parallel with other blocks.

    A block whose ``contribute_dockerfile`` steps need nothing that other
    blocks produce, and write only below a few folders (an IDE in its own
    environment), returns those folders. When it is part of the template's
    leading run of such blocks and that run has two or more, its steps build
    as their own stage ``FROM`` the base image, in parallel with the others,
    and the image takes the folders (``COPY --from``) in template order;
    otherwise (a stage alone would overlap with nothing), and with
    ``build: {parallel_stages: false}``, its steps run in place as usual.
    Steps that ``register_code_env`` adds to the block's group must write
    below those folders too.

    :param block: the block being applied.
    :param state: the build state so far.
    :return: a list of absolute folder paths in the image, or ``None`` (the
        steps need earlier blocks' output or write elsewhere).
    """


@hookspec
def contribute_code_env(block, state):
    """Announce a code env this block installs.

    :param block: the block being applied.
    :param state: the build state so far.
    :return: a :class:`~codestudio.blockapi.CodeEnv`, a list of them, or
        ``None``. Each announced env is broadcast through ``register_code_env``.
        Two code envs with one name are a template error naming both blocks.
    """


@hookspec
def contribute_entrypoint(block, state):
    """Return the processes the runner starts for this block.

    :param block: the block being applied.
    :param state: the build state so far.
    :return: an :class:`~codestudio.blockapi.Entrypoint`, a list of them, or
        ``None``. A port already used by an earlier entrypoint is a template
        error naming both blocks.
    """


@hookspec
def contribute_action(block, state):
    """Return custom actions users can run in the studio.

    :param block: the block being applied.
    :param state: the build state so far.
    :return: an :class:`~codestudio.blockapi.Action`, a list of them, or
        ``None``. Action names are unique within a template.
    """


@hookspec
def contribute_starter_files(block, state):
    """Return files written into zones once, when a studio is created.

    :param block: the block being applied.
    :param state: the build state so far.
    :return: a list of :class:`~codestudio.blockapi.StarterFile` or ``None``.
        A later block's file at the same zone and path replaces an earlier one.
    """


@hookspec
def contribute_sync(block, state):
    """Return file-synchronisation mappings and exclusions.

    Once any block returns a value, only the returned mappings are synced;
    with none, every zone maps two-way to its default target.

    :param block: the block being applied.
    :param state: the build state so far.
    :return: a tuple ``(mappings, exclusions)``: a list of
        :class:`~codestudio.blockapi.SyncMapping` and a list of gitignore
        patterns (without ``!``), or ``None``.
    """


@hookspec
def contribute_env(block, state):
    """Return environment variables the runner sets for every entrypoint and action.

    Values may reference container variables as ``${NAME}`` (expanded by the
    runner inside the container, e.g. ``${K8S_POD_NAME}``). Never return
    secrets: runner.json is stored in the image.

    :param block: the block being applied.
    :param state: the build state so far.
    :return: a ``dict`` of names to values, or ``None``. Later blocks win.
    """


@hookspec
def contribute_ports(block, state):
    """Return extra container ports to expose (beyond entrypoints' own ports).

    :param block: the block being applied.
    :param state: the build state so far.
    :return: a list of ports or ``None``.
    """


@hookspec
def adjust_probe(block, state, probe):
    """Replace the readiness probe.

    Each returned probe replaces the previous one, so the last block in
    template order that returns a probe wins; with none, the probe is TCP on
    the first exposed port. IDE blocks return their HTTP probe only when
    ``probe`` is ``None``; the ``kubernetes`` block always returns its own, so
    the admin's probe wins wherever that block sits.

    :param block: the block being applied.
    :param state: the build state so far.
    :param probe: the probe set by earlier blocks, or ``None``.
    :return: a new :class:`~codestudio.blockapi.Probe`, or ``None`` to keep
        ``probe``.
    """


@hookspec
def adjust_pod(block, state, pod):
    """Replace the studio pod's settings: CPU and memory, the memory tools need.

    Each returned value replaces the previous one (return a modified copy of
    ``pod``, e.g. ``pod.model_copy(update={"memory": "2Gi"})``), so the last
    block in template order that sets a field wins. The ``kubernetes`` block
    sets ``cpu`` and ``memory``; IDE blocks add the memory their tool needs
    to start with :meth:`~codestudio.blockapi.PodSettings.with_memory_needed`.

    :param block: the block being applied.
    :param state: the build state so far.
    :param pod: the :class:`~codestudio.blockapi.PodSettings` set by earlier
        blocks (all fields unset at first).
    :return: a new :class:`~codestudio.blockapi.PodSettings`, or ``None`` to
        keep ``pod``.
    """


@hookspec
def adjust_lifecycle(block, state, policy):
    """Replace the studio's idle timeout and maximum lifetime.

    Each returned policy replaces the previous one (the last block that
    returns one wins); fields left ``None`` fall back to the data dir's
    defaults. The ``lifecycle`` block returns its own.

    :param block: the block being applied.
    :param state: the build state so far.
    :param policy: the :class:`~codestudio.blockapi.LifecyclePolicy` set by
        earlier blocks (both fields ``None`` at first).
    :return: a new :class:`~codestudio.blockapi.LifecyclePolicy`, or ``None``
        to keep ``policy``.
    """


@hookspec
def report_activity(block, studio):
    """Say when this block's tool was last active in a running studio.

    Not a build hook: the engine calls it on each block of a running studio's
    template whenever it looks at the studio's activity (the culler every
    minute, ``studio status``). The studio's last activity is the latest of
    the gateway's (requests and websocket messages through the pod's guard)
    and every block's report, so a tool working with no tab open (a busy
    kernel) keeps the studio from being culled. Keep it fast (one or two
    requests with the default timeout); an exception or an unreachable tool
    counts as no report (logged, never fatal).

    :param block: the block (its ``params`` say the tool's port).
    :param studio: a :class:`~codestudio.blockapi.StudioConnection` to ask
        the tool through the pod's guard (the engine's requests are not
        counted as activity).
    :return: an :class:`~codestudio.blockapi.Activity`, or ``None`` when the
        block has nothing to say.
    """


@hookspec
def register_code_env(block, code_env, state):
    """Make a code env available in this block's tool (broadcast).

    JupyterLab registers it as a kernel, VS Code as an interpreter and a
    debug configuration. Called once per (block, code env) pair whichever
    order they appear in (see the module docstring).

    :param block: the block being told (the IDE).
    :param code_env: the announced :class:`~codestudio.blockapi.CodeEnv`.
    :param state: the build state so far.
    :return: a list of Dockerfile steps (joining the later block's group), or
        ``None`` to ignore the code env.
    """


@hookspec
def validate_block(block, state):
    """Check the block against the rest of the template.

    Called once every block of the template has applied, so ``state`` is
    the final build state and the rule holds whichever order the blocks
    appear in. Field-level checks belong in the ``Params`` model; this is
    for rules that need other blocks (a code env that must exist, say).
    Not called when applying the blocks already found problems.

    :param block: the block being checked.
    :param state: the final build state of the template.
    :return: a list of problems as ``(field, message)`` tuples, or ``None``.
    """
