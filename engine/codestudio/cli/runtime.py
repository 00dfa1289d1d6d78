"""``codestudio runtime show|set``: thin over codestudio.runtime.kubernetes.configure."""

from __future__ import annotations

import click

from codestudio.cli import output


@click.group()
def runtime() -> None:
    """Show or choose where studios run: local (podman) or kubernetes (a cluster)."""


@runtime.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show(as_json: bool) -> None:
    """Print the data dir's runtime setting (names only, never a credential)."""
    from codestudio.runtime.kubernetes.configure import show as show_setting

    output.data(show_setting(), as_json=as_json)


@runtime.group("set")
def set_() -> None:
    """Choose the runtime (checked before it is saved; nothing is saved when a check fails)."""


@set_.command("local")
def set_local() -> None:
    """Run studios on this machine with podman (the default)."""
    from codestudio.runtime.kubernetes.configure import set_local as do

    do()
    output.info("runtime: local")


@set_.command("kubernetes")
@click.option("--context", default=None, help="kubeconfig context (default: the current one; 'in-cluster': the pod's service account).")
@click.option("--namespace", required=True, help="Namespace the studios run in.")
@click.option("--registry", required=True, help="Registry images are pushed to: host[:port][/path].")
@click.option("--pull-secret", default=None, help="Image pull secret in the namespace (for a registry that needs credentials).")
@click.option("--gateway", type=click.Choice(["in-cluster", "port-forward"]), default="port-forward", show_default=True,
              help="How the gateway reaches pods: Service addresses (engine in the cluster) or port-forwards.")
def set_kubernetes(context, namespace, registry, pull_secret, gateway) -> None:
    """Run studios on a cluster; checks the context, the namespace, the pull secret and the registry."""
    from codestudio.runtime.kubernetes.configure import set_kubernetes as do

    s = do(context=context, namespace=namespace, registry=registry, pull_secret=pull_secret, gateway=gateway,
           say=output.info)
    output.info(f"runtime: kubernetes (namespace {s.namespace}, registry {s.registry}, gateway {s.gateway})")
