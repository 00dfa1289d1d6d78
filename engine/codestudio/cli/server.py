"""``codestudio server``, ``login``, ``logout``, ``token``: the web UI and its sign-in (thin over codestudio.signin)."""

from __future__ import annotations

import click

from codestudio.cli import output


def _who(ctx: click.Context):
    from codestudio.access import identify

    return identify((ctx.obj or {}).get("user"))


def _store():
    from codestudio.store import Store

    return Store.default()


def _settings(**overrides):
    from codestudio.home import data_dir
    from codestudio.server.settings import ServerSettings

    base = ServerSettings.load(data_dir())
    values = base.as_dict()
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ServerSettings.from_dict(values)


@click.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port to listen on (default 8801).")
@click.option("--public-url", default=None, help="The UI origin users open (default http://localhost:PORT).")
@click.option("--content-url", default=None, help="Where studio content is served (default: the gateway's URL).")
@click.option("--studio-host-pattern", default=None, help="One content host per studio, e.g. '{studio}.studios.localhost:8800'.")
@click.option("--auth", type=click.Choice(["link", "proxy"]), default=None, help="Sign-in mode (default link).")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, help="Address or network of a trusted proxy (repeat).")
@click.option("--user-header", default=None, help="Proxy mode: header naming the user (default X-Forwarded-User).")
@click.option("--groups-header", default=None, help="Proxy mode: header listing groups (default X-Forwarded-Groups).")
@click.option("--email-header", default=None, help="Proxy mode: header with the email (default X-Forwarded-Email).")
def server(host, port, public_url, content_url, studio_host_pattern, auth, trusted_proxies, user_header, groups_header,
           email_header) -> None:
    """Run the web UI and the REST API (/api/v1) in the foreground; settings are saved for `codestudio login`."""
    from codestudio.home import data_dir
    from codestudio.server.app import serve

    settings = _settings(host=host, port=port, public_url=public_url, content_url=content_url,
                         studio_host_pattern=studio_host_pattern, auth=auth,
                         trusted_proxies=list(trusted_proxies) or None, user_header=user_header,
                         groups_header=groups_header, email_header=email_header)
    settings.check_origins()
    settings.save(data_dir())
    output.info(f"codestudio server on {settings.ui_url} (listening on {settings.host}:{settings.port}; "
                f"studio content on {settings.content_base()}); sign in with: codestudio login")
    serve(settings, data_dir=data_dir())


@click.command()
@click.option("--ttl", type=click.IntRange(min=10, max=604800), default=600, show_default=True,
              help="Seconds the link stays valid (at most 604800 = 7 days).")
@click.option("--enable", is_flag=True, help="Admins: enable a disabled user first.")
@click.pass_context
def login(ctx: click.Context, ttl: int, enable: bool) -> None:
    """Print a one-time sign-in link for the web UI (for --user U: admins only)."""
    from codestudio import signin

    who = _who(ctx)
    store = _store()
    target = (ctx.obj or {}).get("user") or who.name
    if enable:
        from codestudio.access import identify

        signin.enable_user(identify(), target, store=store)  # who acts is the OS user, not --user
    user, key = signin.new_link_key(who, target, ttl=ttl, store=store)
    output.info(f"one-time sign-in link for {user}, valid {ttl} s:")
    output.line(f"{_settings().ui_url}/signin?key={key}")


@click.command()
@click.option("--disable", is_flag=True, help="Admins: also revoke the user's API tokens and refuse new sign-ins.")
@click.pass_context
def logout(ctx: click.Context, disable: bool) -> None:
    """End every web session of the acting user (--user U: admins end another user's)."""
    from codestudio import signin

    who = _who(ctx)
    store = _store()
    target = (ctx.obj or {}).get("user") or who.name
    if disable:
        # --user names the target, not who acts: an admin disables someone else.
        from codestudio.access import identify

        me = identify()
        done = signin.disable_user(me, target, store=store)
        output.info(f"{target} disabled: {done['sessions_revoked']} session(s), {done['tokens_revoked']} token(s) revoked")
        return
    n = signin.revoke_sessions(who, target, store=store)
    output.info(f"{n} web session(s) of {target} ended")


@click.group()
def token() -> None:
    """Personal API tokens for scripts (shown once, stored hashed)."""


@token.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def token_create(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create a token NAME and print it (the only time it is shown)."""
    from codestudio import signin

    row, secret = signin.create_token(_who(ctx), name, store=_store())
    if as_json:
        output.data(row | {"token": secret}, as_json=True)
        return
    output.info(f"token {row['id']} ({name}) for {row['user']}; keep it, it is not shown again:")
    output.line(secret)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def token_list(ctx: click.Context, as_json: bool) -> None:
    """List your live tokens (never the tokens themselves)."""
    from codestudio import signin

    output.table(signin.list_tokens(_who(ctx), store=_store()), ["id", "name", "user", "created_at", "last_used"], as_json=as_json)


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke token TOKEN_ID: it stops working at once."""
    from codestudio import signin

    signin.revoke_token(_who(ctx), token_id, store=_store())
    output.info(f"token {token_id} revoked")
