"""Download RStudio Server's .deb and check its sha256 (build time).

    fetch_deb.py DEST BLOCK SOURCES_JSON

SOURCES_JSON maps a Debian release codename (``VERSION_CODENAME`` of
/etc/os-release) to ``[url, sha256]``; ``"*"`` matches any release (a
``deb_url`` the template gives). Uses the standard library only: the base
image has python3 but no curl. The build's CA bundle (``SSL_CERT_FILE``)
and proxy settings come from the environment, as for every other download.
On failure it exits non-zero with a message naming the block, the URL and
how to give the .deb instead.
"""

import hashlib
import json
import sys
import urllib.request

dest, block, sources = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
HOW = (f"give the .deb instead: put it next to the template and set `deb: <file>.deb` in {block}, "
       "or set deb_url (with sha256) to a mirror you can reach")


def fail(message):
    sys.exit(f"{block}: {message}; {HOW}")


release = ""
try:
    with open("/etc/os-release", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VERSION_CODENAME="):
                release = line.split("=", 1)[1].strip().strip('"')
except OSError:
    pass
if release in sources:
    url, expected = sources[release]
elif "*" in sources:
    url, expected = sources["*"]
else:
    fail(f"no pinned RStudio Server download for Debian release {release or '(unknown)'} "
         f"(pinned: {', '.join(sorted(sources))})")
digest = hashlib.sha256()
try:
    with urllib.request.urlopen(url, timeout=300) as response, open(dest, "wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
    fail(f"could not download RStudio Server from {url}: {exc}")
if digest.hexdigest() != expected.lower():
    fail(f"sha256 mismatch for {url}: expected {expected.lower()}, got {digest.hexdigest()}")
print(f"downloaded {url} ({dest}), sha256 ok")
