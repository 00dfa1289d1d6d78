"""Download a file and check its sha256 (build time): fetch_deb.py URL SHA256 DEST.

Uses the standard library only: the base image has python3 but no curl.
The build's CA bundle and proxy settings come from the environment.
"""

import hashlib
import sys
import urllib.request

url, expected, dest = sys.argv[1:4]
digest = hashlib.sha256()
with urllib.request.urlopen(url, timeout=120) as response, open(dest, "wb") as out:
    while chunk := response.read(1 << 20):
        digest.update(chunk)
        out.write(chunk)
if digest.hexdigest() != expected.lower():
    sys.exit(f"sha256 mismatch for {url}: expected {expected}, got {digest.hexdigest()}")
print(f"downloaded {url} ({dest}), sha256 ok")
