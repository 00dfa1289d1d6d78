"""Gateway config rendering: locations, subpath modes, validation, escaping, access URLs."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codestudio.errors import UsageError
from codestudio.gateway.config import (
    GatewaySettings,
    PortRoute,
    StudioRoutes,
    Workers,
    access_token,
    error_pages,
    landing_pages,
    make_access_url,
    new_session_secret,
    ngx_quote,
    render_gateway_config,
    render_studio_locations,
)

EVIL_LABELS = [
    '"; } location / { return 200 "pwned"; }',
    "a}b{c;d",
    "line one\nreturn 200;\n",
    "$request_uri ${x} \\ ' `",
    "<script>alert(1)</script>",
]


def parse_nginx(text: str) -> list:
    """A small nginx config parser: [(name, [args], children | None)] with quotes resolved.

    Enough to assert the structure of what we render; it fails loudly on anything
    unbalanced, which is itself a sign of injection.
    """
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif c in "{};":
            tokens.append(("punct", c))
            i += 1
        elif c in "\"'":
            j, buf = i + 1, []
            while text[j] != c:
                if text[j] == "\\":
                    j += 1
                buf.append(text[j])
                j += 1
            tokens.append(("word", "".join(buf)))
            i = j + 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "{};\"'":
                j += 1
            tokens.append(("word", text[i:j]))
            i = j

    def block(pos: int, closing: bool):
        out, words = [], []
        while pos < len(tokens):
            kind, value = tokens[pos]
            pos += 1
            if kind == "word":
                words.append(value)
            elif value == ";":
                assert words, "empty directive"
                out.append((words[0], words[1:], None))
                words = []
            elif value == "{":
                children, pos = block(pos, True)
                out.append((words[0], words[1:], children))
                words = []
            else:  # "}"
                assert closing and not words, "unbalanced '}'"
                return out, pos
        assert not closing and not words, "unterminated block"
        return out, pos

    tree, _ = block(0, False)
    return tree


def walk(tree):
    for name, args, children in tree:
        yield name, args, children
        if children:
            yield from walk(children)


def studio(label="Jupyter", *, secret: str | None = "s" * 43, project="PROJ", sid="my-studio", actions=()):
    return StudioRoutes(
        project_key=project,
        studio_id=sid,
        owner="alice",
        session_secret=secret,
        ports=(
            PortRoute(port=8888, upstream_port=40001, proxied_subpath="/", label=label),
            PortRoute(port=8080, upstream_port=40002, proxied_subpath="$request_uri", label="API"),
        ),
        actions=actions,
    )


def locations(tree) -> dict[tuple[str, ...], list]:
    return {tuple(args): children for name, args, children in walk(tree) if name == "location"}


def directives(children, name):
    return [args for n, args, _ in children if n == name]


def test_locations_for_both_subpath_modes():
    tree = parse_nginx(render_studio_locations(studio()))
    locs = locations(tree)
    assert set(locs) == {
        ("=", "/code-studios/PROJ/my-studio"),
        ("^~", "/code-studios/PROJ/my-studio/"),
        ("=", "/code-studios/PROJ/my-studio/"),
        ("=", "/code-studios/PROJ/my-studio/8888"),
        ("^~", "/code-studios/PROJ/my-studio/8888/"),
        ("=", "/code-studios/PROJ/my-studio/8080"),
        ("^~", "/code-studios/PROJ/my-studio/8080/"),
    }
    strip = locs[("^~", "/code-studios/PROJ/my-studio/8888/")]
    assert directives(strip, "proxy_pass") == [["http://cs.PROJ.my-studio.8888$cs_rest"]]
    assert directives(strip, "proxy_redirect") == [["/", "/code-studios/PROJ/my-studio/8888/"]]
    full = locs[("^~", "/code-studios/PROJ/my-studio/8080/")]
    # No URI part: nginx passes the original request URI unchanged.
    assert directives(full, "proxy_pass") == [["http://cs.PROJ.my-studio.8080"]]
    assert directives(full, "proxy_redirect") == []
    # Without the trailing slash: redirected, keeping the query (an access token may be in it).
    assert directives(locs[("=", "/code-studios/PROJ/my-studio/8888")], "return") == [
        ["301", "/code-studios/PROJ/my-studio/8888/$is_args$args"]
    ]


def test_every_studio_location_checks_the_cookie_first():
    s = studio()
    tree = parse_nginx(render_studio_locations(s))
    for (kind, path), children in locations(tree).items():
        if not path.endswith("/"):
            continue  # the slash redirects carry no content
        ifs = [(args, body) for name, args, body in children if name == "if"]
        assert ifs[0][0] == ["($cs_token_state", "=", "valid)"]
        assert ifs[2][0] == ["($cookie_cs_session", "!=", s.cookie_value, ")"]
        assert directives(ifs[2][1], "return") == [["401"]]
        assert directives(ifs[1][1], "return") == [["403"]]
        set_cookie = [a for a in directives(ifs[0][1], "add_header") if a[0] == "Set-Cookie"][0][1]
        assert set_cookie == (
            f"cs_session={s.cookie_value}; Path=/code-studios/PROJ/my-studio/; HttpOnly; SameSite=Lax"
        )


def test_render_preview_refuses_everyone():
    text = render_studio_locations(studio(secret=None))
    tree = parse_nginx(text)
    for (kind, path), children in locations(tree).items():
        if path.endswith("/"):
            assert children[0] == ("return", ["401"], None)
    assert "cs_session=" not in text


@pytest.mark.parametrize("label", EVIL_LABELS)
def test_labels_never_reach_the_config(label):
    s = studio(label, actions=(("clear", label),))
    text = render_gateway_config([s], GatewaySettings(port=18000))
    tree = parse_nginx(text)  # balanced: nothing was injected
    assert label not in text
    assert "pwned" not in text
    top = {name for name, _, _ in tree}
    assert top == {"worker_processes", "pid", "error_log", "worker_shutdown_timeout", "events", "http"}
    # The label shows up, escaped, in the landing page only.
    (page,) = landing_pages([s]).values()
    assert "<script>" not in page
    if label == "<script>alert(1)</script>":
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_arbitrary_labels_keep_the_config_identical(label):
    """The config does not depend on labels at all (except the landing page's file name)."""
    a = render_studio_locations(studio(label))
    b = render_studio_locations(studio("plain"))
    strip = lambda t: "\n".join(l for l in t.splitlines() if "try_files" not in l)  # noqa: E731
    assert strip(a) == strip(b)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"project_key": 'P"; }'}, "project key"),
        ({"project_key": "../x"}, "project key"),
        ({"studio_id": "Bad_ID"}, "studio id"),
        ({"studio_id": "a b"}, "studio id"),
        ({"session_secret": "short"}, "session secret"),
        ({"session_secret": 'x' * 40 + '"; }'}, "session secret"),
        ({"upstream_host": "localhost; }"}, "upstream_host"),
    ],
)
def test_studio_fields_are_validated(kwargs, needle):
    base = dict(project_key="P", studio_id="s", owner="o", session_secret=new_session_secret(), ports=())
    with pytest.raises(UsageError, match=needle):
        StudioRoutes(**{**base, **kwargs})


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"port": 0}, "port"),
        ({"port": "80"}, "port"),
        ({"upstream_port": 70000}, "upstream_port"),
        ({"proxied_subpath": "/x"}, "proxied_subpath"),
        ({"proxied_subpath": "$uri"}, "proxied_subpath"),
    ],
)
def test_port_fields_are_validated(kwargs, needle):
    base = dict(port=8888, upstream_port=40000, proxied_subpath="/", label="x")
    with pytest.raises(UsageError, match=needle):
        PortRoute(**{**base, **kwargs})


def test_duplicate_ports_and_prefixes_are_refused():
    with pytest.raises(UsageError, match="twice"):
        StudioRoutes("P", "s", "o", None, (PortRoute(1, 2, "/", "a"), PortRoute(1, 3, "/", "b")))
    with pytest.raises(UsageError, match="share the URL prefix"):
        render_gateway_config([studio(), studio()], GatewaySettings())


@pytest.mark.parametrize(
    "kwargs",
    [{"host": "0.0.0.0; }"}, {"host": "example.com"}, {"port": 0}, {"idle_timeout": "1d; x"},
     {"worker_processes": "auto;"}, {"worker_user": "root; }"}, {"worker_user": "root"},
     {"public_url": "http://x/\"; }"}],
)
def test_settings_are_validated(kwargs):
    with pytest.raises(UsageError):
        GatewaySettings(**kwargs)


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", "9123")
    monkeypatch.setenv("CODESTUDIO_GATEWAY_HOST", "::1")
    s = GatewaySettings.from_env()
    assert (s.port, s.listen, s.base_url) == (9123, "[::1]:9123", "http://[::1]:9123")
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", "nope")
    with pytest.raises(UsageError, match="CODESTUDIO_GATEWAY_PORT"):
        GatewaySettings.from_env()


def test_worker_user_from_env(monkeypatch):
    monkeypatch.setenv("CODESTUDIO_GATEWAY_USER", "www-data")
    assert GatewaySettings.from_env().worker_user == "www-data"
    monkeypatch.setenv("CODESTUDIO_GATEWAY_USER", "root")
    with pytest.raises(UsageError, match="CODESTUDIO_GATEWAY_USER.*root"):
        GatewaySettings.from_env()


def test_workers_switch_user_and_move_pages_and_temp_out_of_the_prefix():
    workers = Workers(user="nobody", group="nogroup", dir="/var/lib/codestudio-gateway/0123abcd")
    tree = parse_nginx(render_gateway_config([studio()], GatewaySettings(port=18000), workers))
    found = {name: args for name, args, _ in walk(tree)}
    assert found["user"] == ["nobody", "nogroup"]
    assert found["root"] == ["/var/lib/codestudio-gateway/0123abcd/html"]
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert found[f"{kind}_temp_path"] == [f"/var/lib/codestudio-gateway/0123abcd/temp/{kind}"]
    # The master alone opens these, as root: they stay under the prefix.
    assert found["pid"] == ["nginx.pid"] and found["error_log"] == ["logs/error.log", "error"]
    # Without workers (not root): no `user`, every path prefix-relative.
    plain = {name: args for name, args, _ in walk(parse_nginx(render_gateway_config([], GatewaySettings())))}
    assert "user" not in plain and plain["root"] == ["html"]
    assert plain["client_body_temp_path"] == ["temp/client_body"]


@pytest.mark.parametrize(
    "kwargs",
    [{"user": "root"}, {"group": "root"}, {"user": "a b"}, {"dir": "relative/x"},
     {"dir": "/x/../etc"}, {"dir": '/x"; user root'}, {"dir": "/x/$y"}],
)
def test_workers_are_validated(kwargs):
    with pytest.raises(UsageError):
        Workers(**{"user": "nobody", "group": "nogroup", "dir": "/var/lib/x", **kwargs})


def test_ngx_quote_refuses_variables_and_control_characters():
    assert ngx_quote('a"b\\c') == '"a\\"b\\\\c"'
    for bad in ("$x", "a\nb", "a\x00"):
        with pytest.raises(UsageError):
            ngx_quote(bad)


def test_access_url_carries_a_secure_link_token():
    s = studio()
    url = make_access_url(s, "http://gw:8800/", ttl=60, port=8888, now=1000)
    assert url.startswith("http://gw:8800/code-studios/PROJ/my-studio/8888/?cs_expires=1060&cs_token=")
    token = url.rsplit("=", 1)[1]
    # Computed independently, as nginx's secure_link_md5 does it.
    raw = f"1060/code-studios/PROJ/my-studio/ {s.link_key}".encode()
    assert token == base64.urlsafe_b64encode(hashlib.md5(raw).digest()).decode().rstrip("=")
    assert access_token(s, 1060) == token
    with pytest.raises(UsageError, match="no port 1234"):
        make_access_url(s, "http://gw", port=1234)


def test_secrets_are_derived_per_studio_and_never_the_stored_one():
    secret = new_session_secret()
    a, b = studio(secret=secret), studio(secret=secret, sid="other")
    assert a.cookie_value != b.cookie_value and a.link_key != b.link_key
    text = render_gateway_config([a, b], GatewaySettings())
    assert secret not in text
    assert a.cookie_value in text and b.cookie_value in text


def test_port_locations_send_the_studios_guard_secret():
    a, b = studio(), studio(sid="other")
    assert a.guard_secret != b.guard_secret
    assert a.guard_secret not in (a.cookie_value, a.link_key)
    tree = parse_nginx(render_gateway_config([a], GatewaySettings()))
    server = [c for n, _, c in walk(tree) if n == "server" and c is not None][0]
    # One server-level header; locations only set the variable, so they keep inheriting
    # every other proxy_set_header (a location-level one would drop them all).
    assert ["X-Codestudio-Guard", "$cs_guard"] in directives(server, "proxy_set_header")
    assert ["$cs_guard", ""] in directives(server, "set")
    for children in locations(tree).values():
        assert directives(children, "proxy_set_header") == []
        if directives(children, "proxy_pass"):
            assert ["$cs_guard", a.guard_secret] in directives(children, "set")
    preview = render_studio_locations(studio(secret=None))
    assert "$cs_guard" not in preview


def test_error_pages_exist_for_gateway_errors():
    assert set(error_pages()) == {f"_codestudio/errors/{c}.html" for c in (401, 403, 404, 502, 504)}


@pytest.mark.e2e
@pytest.mark.parametrize("label", EVIL_LABELS)
def test_rendered_config_passes_nginx_t(tmp_path: Path, label):
    from codestudio.gateway.process import find_nginx

    studios = [studio(label), studio(sid="second", project="other-P_1"), studio(secret=None, sid="preview")]
    text = render_gateway_config(studios, GatewaySettings(port=18000))
    for sub in ("logs", "temp", "html"):
        (tmp_path / sub).mkdir()
    (tmp_path / "nginx.conf").write_text(text)
    proc = subprocess.run(
        [find_nginx(), "-t", "-p", f"{tmp_path}/", "-c", "nginx.conf", "-e", "stderr"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.e2e
def test_empty_config_passes_nginx_t(tmp_path: Path):
    from codestudio.gateway.process import Gateway

    gw = Gateway(tmp_path, settings=GatewaySettings(port=18000))
    try:
        gw.check(gw.render([]))
        with pytest.raises(Exception, match="rejected by nginx -t"):
            gw.check("http { bogus_directive on; }\n")
    finally:
        gw.stop()  # as root, removes the workers' folder outside tmp_path


def test_ipv6_upstream_and_listen():
    s = StudioRoutes("P", "s", "o", new_session_secret(), (PortRoute(1, 2, "/", "x"),), upstream_host="::1")
    text = render_gateway_config([s], GatewaySettings(host="::1", port=18000))
    servers = [args for name, args, _ in walk(parse_nginx(text)) if name in ("server", "listen") and args]
    assert ["[::1]:2"] in servers and ["[::1]:18000"] in servers


def test_worker_identity_refuses_root_ids_and_missing_users(monkeypatch):
    import pwd

    from codestudio.errors import RuntimeFailure, UsageError
    from codestudio.gateway import process

    real = pwd.getpwnam

    def fake(name):
        if name == "toor":  # a second name for uid 0
            return pwd.struct_passwd(("toor", "x", 0, 0, "", "/", "/bin/sh"))
        return real(name)

    monkeypatch.setattr(pwd, "getpwnam", fake)
    # A user named by CODESTUDIO_GATEWAY_USER is input: exit 2, not a runtime failure.
    with pytest.raises(UsageError, match="uid or gid 0"):
        process.worker_identity(GatewaySettings(worker_user="toor"))
    with pytest.raises(UsageError, match="does not exist") as info:
        process.worker_identity(GatewaySettings(worker_user="no-such-user-cs"))
    assert info.value.exit_code == 2
    # No user named and not even the fallback exists: the host's problem (exit 1).
    monkeypatch.setattr(process, "WORKER_USER", "no-such-user-cs")
    monkeypatch.setattr(process, "FALLBACK_WORKER_USER", "no-such-user-cs2")
    with pytest.raises(RuntimeFailure, match="does not exist"):
        process.worker_identity(GatewaySettings())
    monkeypatch.setattr(process, "FALLBACK_WORKER_USER", "nobody")
    # Default: the dedicated user when it exists, else nobody.
    monkeypatch.setattr(process, "WORKER_USER", "no-such-user-cs")
    assert process.worker_identity(GatewaySettings()).user == "nobody"
    monkeypatch.setattr(process, "WORKER_USER", "daemon")
    assert process.worker_identity(GatewaySettings()).user == "daemon"


def test_cookie_is_secure_by_default_behind_an_https_url():
    from codestudio.gateway.config import GatewaySettings, PortRoute, StudioRoutes, render_studio_locations

    routes = StudioRoutes("P", "s", "alice", "a" * 64, (PortRoute(8080, 41000, "/", "x"),))
    plain = render_studio_locations(routes, GatewaySettings())
    behind_tls = render_studio_locations(routes, GatewaySettings(public_url="https://studios.example.org"))
    forced_off = render_studio_locations(routes, GatewaySettings(public_url="https://studios.example.org", cookie_secure=False))
    assert "; Secure" not in plain and "; Secure" in behind_tls and "; Secure" not in forced_off
