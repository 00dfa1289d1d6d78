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
    landing_digest,
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


def maps(tree) -> dict[str, dict[str, str]]:
    """``{result variable: {key: value}}`` of every ``map`` block."""
    return {args[1]: {n: a[0] for n, a, _ in children} for name, args, children in walk(tree) if name == "map"}


def test_route_rows_for_both_subpath_modes():
    s = studio()
    table = maps(parse_nginx(render_studio_locations(s)))
    assert table["$cs_studio"] == {
        "default": "",
        "/code-studios/PROJ/my-studio/": f"/code-studios/PROJ/my-studio/ l {s.cookie_value} {s.link_key} "
        f"{s.guard_secret} {landing_digest(s)}",
    }
    assert table["$cs_port_route"] == {
        "default": "",
        "/code-studios/PROJ/my-studio/8080/": "f cs_pool_0 1 127.0.0.1:40002",  # $request_uri: the full path
        "/code-studios/PROJ/my-studio/8888/": "s cs_pool_0 0 127.0.0.1:40001",  # "/": the prefix stripped
    }


def test_each_port_row_picks_exactly_its_server():
    """The pick key of every port row selects, by nginx's own `hash` rule, the server
    line holding that port's address: ((crc32(key) >> 16) & 0x7fff) % servers."""
    import zlib

    many = [
        StudioRoutes(f"P{i % 7}", f"s{i}", "o", new_session_secret(),
                     (PortRoute(8888, 20000 + 2 * i, "/", "a"), PortRoute(8080, 20001 + 2 * i, "$request_uri", "b")))
        for i in range(700)
    ]
    tree = parse_nginx(render_gateway_config(many, GatewaySettings()))
    pools = {args[0]: children for name, args, children in walk(tree) if name == "upstream"}
    assert len(pools) == 6  # 1,400 ports in pools of 256
    for name, children in pools.items():
        assert directives(children, "hash") == [["$cs_pick"]]
        assert directives(children, "keepalive") == [["16"]]
        assert all(args[1] == "max_fails=0" for args in directives(children, "server"))
    rows = maps(tree)["$cs_port_route"]
    assert len(rows) == 1 + 1400
    for key, row in rows.items():
        if key == "default":
            continue
        _, pool, pick, address = row.split(" ")
        servers = directives(pools[pool], "server")
        chosen = ((zlib.crc32(pick.encode()) >> 16) & 0x7FFF) % len(servers)
        assert servers[chosen][0] == address
    port = [c for args, c in locations(tree).items() if args[0] == "~" and "(?<cs_port>" in args[1]][0]
    assert directives(port, "proxy_next_upstream") == [["off"]]  # a failed pick is never retried elsewhere


def test_generic_port_location_serves_both_subpath_modes():
    tree = parse_nginx(render_gateway_config([studio()], GatewaySettings()))
    port = [c for args, c in locations(tree).items() if args[0] == "~" and "(?<cs_port>" in args[1]][0]
    assert directives(port, "proxy_pass") == [["http://$cs_pool$cs_pass_uri"]]
    assert directives(port, "proxy_redirect") == [["/", "$cs_redirect_to"]]
    table = maps(parse_nginx(render_gateway_config([studio()], GatewaySettings())))
    # "/": the raw rest of the URI and root-relative redirects put back under the prefix;
    # "$request_uri": the original URI, redirects untouched.
    assert table["$cs_pass_uri"] == {"default": "", "~^s ": "$cs_rest", "~^f ": "$request_uri"}
    assert table["$cs_redirect_to"] == {"default": "/", "~^s ": "$cs_base/$cs_port/"}
    # Without the trailing slash: redirected, keeping the query (an access token may be in it).
    ifs = [(args, body) for name, args, body in port if name == "if"]
    assert ifs[0][0] == ["($cs_port_slash)"]
    assert directives(ifs[0][1], "return") == [["301", "$cs_base/$cs_port/$is_args$args"]]


def test_every_studio_location_checks_the_cookie_first():
    tree = parse_nginx(render_gateway_config([studio()], GatewaySettings()))
    served = {args[1]: c for args, c in locations(tree).items()
              if args[0] == "~" and "/code-studios/" in args[1] and not args[1].endswith(")$")}
    assert len(served) == 3  # a port, the landing page, anything else under a studio
    for path, children in served.items():
        ifs = [(args, body) for name, args, body in children if name == "if" and args != ["($cs_port_slash)"]]
        # Another origin's request first (docs/security.md, "Webapps"), then the owner's check.
        assert ifs[0][0] == ["($cs_origin_refused)"] and directives(ifs[0][1], "return") == [["403"]]
        ifs = ifs[1:]
        assert [args for args, _ in ifs[:5]] == [
            ["($cs_studio_state", "=", "", ")"],
            ["($cs_studio_state", "=", "p)"],
            ["($cs_token_state", "=", "valid)"],
            ["($cs_token_state", "=", "invalid)"],
            ["($cs_cookie_ok", "=", "", ")"],
        ]
        assert [directives(body, "return") for _, body in ifs[:5]] == [
            [["404"]], [["401"]], [["302", "$cs_request_path"]], [["403"]], [["401"]]
        ]
        set_cookie = [a for a in directives(ifs[2][1], "add_header") if a[0] == "Set-Cookie"][0][1]
        assert set_cookie == "cs_session=$cs_cookie_value; Path=$cs_base/; HttpOnly; SameSite=Lax"


def test_render_preview_refuses_everyone():
    s = studio(secret=None)
    text = render_studio_locations(s)
    row = maps(parse_nginx(text))["$cs_studio"]["/code-studios/PROJ/my-studio/"]
    assert row.split(" ")[:5] == ["/code-studios/PROJ/my-studio/", "p", "-", "-", "-"]  # no secret at all
    assert "cs_session=" not in text
    # A preview row is refused before any cookie or token is looked at.
    state = maps(parse_nginx(render_gateway_config([s], GatewaySettings())))["$cs_studio_state"]
    assert list(state.values())[1] == "$cs_ss"


def test_keys_differing_only_in_case_stay_apart():
    """nginx map strings ignore case: such keys become case-sensitive regexes, not a clash."""
    a, b, c = studio(project="PROJ"), studio(project="proj"), studio(project="other")
    text = render_gateway_config([a, b, c], GatewaySettings())
    for key in ("PROJ/my-studio/", "proj/my-studio/", "proj/my-studio/8888/"):
        assert f'"~^/code-studios/{key}\\z" "' in text
    assert '"/code-studios/other/my-studio/" "' in text  # the rest stay hash lookups
    assert '"/code-studios/proj/my-studio/"' not in text


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
    """The config does not depend on labels at all (except the landing page's name)."""
    a, b = studio(label), studio("plain")
    assert render_studio_locations(a).replace(landing_digest(a), "") == render_studio_locations(b).replace(landing_digest(b), "")


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
    proxying = 0
    for args, children in locations(tree).items():
        assert directives(children, "proxy_set_header") == []
        if directives(children, "proxy_pass") and "/code-studios/" in args[-1]:
            proxying += 1
            assert ["$cs_guard", "$cs_guard_value"] in directives(children, "set")
    assert proxying == 1
    # The value is the studio's, from its row of the route table.
    assert maps(tree)["$cs_studio"][a.prefix].split(" ")[4] == a.guard_secret
    preview = render_studio_locations(studio(secret=None))
    assert a.guard_secret not in preview and " - - - " in preview


def test_error_pages_exist_for_gateway_errors():
    assert set(error_pages()) == {f"_codestudio/errors/{c}.html" for c in (401, 403, 404, 502, 504)} | {
        f"_codestudio/errors/webapp-{c}.html" for c in (401, 403, 404, 502, 503, 504)}


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
    tree = parse_nginx(render_gateway_config([s], GatewaySettings(host="::1", port=18000)))
    assert maps(tree)["$cs_port_route"]["/code-studios/P/s/1/"] == "s cs_pool_0 0 [::1]:2"
    assert ["[::1]:2", "max_fails=0"] in [args for name, args, _ in walk(tree) if name == "server"]
    assert ["[::1]:18000"] in [args for name, args, _ in walk(tree) if name == "listen"]


def test_worker_identity_refuses_root_ids_and_missing_users(monkeypatch):
    import pwd

    from codestudio.errors import RuntimeFailure, UsageError
    from codestudio.gateway import workers  # where worker_identity reads WORKER_USER

    real = pwd.getpwnam

    def fake(name):
        if name == "toor":  # a second name for uid 0
            return pwd.struct_passwd(("toor", "x", 0, 0, "", "/", "/bin/sh"))
        return real(name)

    monkeypatch.setattr(pwd, "getpwnam", fake)
    # A user named by CODESTUDIO_GATEWAY_USER is input: exit 2, not a runtime failure.
    with pytest.raises(UsageError, match="uid or gid 0"):
        workers.worker_identity(GatewaySettings(worker_user="toor"))
    with pytest.raises(UsageError, match="does not exist") as info:
        workers.worker_identity(GatewaySettings(worker_user="no-such-user-cs"))
    assert info.value.exit_code == 2
    # No user named and not even the fallback exists: the host's problem (exit 1).
    monkeypatch.setattr(workers, "WORKER_USER", "no-such-user-cs")
    monkeypatch.setattr(workers, "FALLBACK_WORKER_USER", "no-such-user-cs2")
    with pytest.raises(RuntimeFailure, match="does not exist"):
        workers.worker_identity(GatewaySettings())
    monkeypatch.setattr(workers, "FALLBACK_WORKER_USER", "nobody")
    # Default: the dedicated user when it exists, else nobody.
    monkeypatch.setattr(workers, "WORKER_USER", "no-such-user-cs")
    assert workers.worker_identity(GatewaySettings()).user == "nobody"
    monkeypatch.setattr(workers, "WORKER_USER", "daemon")
    assert workers.worker_identity(GatewaySettings()).user == "daemon"


def test_cookie_is_secure_by_default_behind_an_https_url():
    from codestudio.gateway.config import GatewaySettings, PortRoute, StudioRoutes

    routes = StudioRoutes("P", "s", "alice", "a" * 64, (PortRoute(8080, 41000, "/", "x"),))
    plain = render_gateway_config([routes], GatewaySettings())
    behind_tls = render_gateway_config([routes], GatewaySettings(public_url="https://studios.example.org"))
    forced_off = render_gateway_config([routes], GatewaySettings(public_url="https://studios.example.org", cookie_secure=False))
    assert "; Secure" not in plain and "; Secure" in behind_tls and "; Secure" not in forced_off


def test_ui_server_block_only_with_ui_port_and_validated():
    from codestudio.errors import UsageError
    from codestudio.gateway.config import GatewaySettings, render_gateway_config

    assert "codestudio server" not in render_gateway_config([], GatewaySettings())
    text = render_gateway_config([], GatewaySettings(ui_port=8000, server_upstream="127.0.0.1:8801"))
    assert "listen 127.0.0.1:8000;" in text and "proxy_pass http://127.0.0.1:8801;" in text
    assert 'proxy_set_header X-Forwarded-User "";' in text
    for bad in ({"ui_port": 8800}, {"ui_port": 0}, {"ui_port": 8000, "server_upstream": "evil;host:1"},
                {"ui_port": 8000, "server_upstream": "127.0.0.1"}):
        with pytest.raises(UsageError):
            GatewaySettings(**bad)


def test_the_web_uis_cookies_are_stripped_like_the_gateways():
    from codestudio.gateway.config import UI_COOKIE_NAMES
    from codestudio.server.auth import COOKIE

    assert COOKIE in UI_COOKIE_NAMES
    text = render_gateway_config([], GatewaySettings())
    assert "(?:cs_session|cs_ui_session|cs_webapp|cs_replica)\\s*=[^;]*" in text
    assert '"~*(?:^|[;,])\\s*(?:cs_session|cs_ui_session|cs_webapp|cs_replica)\\s*=" 1;' in text


def test_ui_block_blanks_the_identity_headers_the_server_trusts(tmp_path, monkeypatch):
    # Renamed in the server's settings: the gateway must blank those names, not only the defaults.
    import json

    from codestudio.gateway.process import Gateway

    for k in ("CODESTUDIO_SERVER_AUTH", "CODESTUDIO_SERVER_TRUSTED_PROXIES"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("CODESTUDIO_GATEWAY_UI_PORT", "8000")
    (tmp_path / "server.json").write_text(json.dumps({
        "auth": "proxy", "trusted_proxies": ["127.0.0.1"], "user_header": "X-Auth-Request-User",
        "email_header": "X-Auth-Request-Email", "groups_header": "X-Auth-Request-Groups"}))
    text = Gateway(tmp_path).render([])
    ui_block = text[text.index("listen 127.0.0.1:8000"):]
    for name in ("X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups",
                 "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups"):
        assert f'proxy_set_header {name} "";' in ui_block, name
    for bad in ("X-User;", "X User", 'X"', "", "a" * 65):
        with pytest.raises(UsageError, match="identity header"):
            GatewaySettings(ui_port=8000, identity_headers=(bad,))
