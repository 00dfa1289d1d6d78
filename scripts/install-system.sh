#!/usr/bin/env bash
# Install the Debian packages codestudio needs (buildah, podman, nginx, ...).
# As root: installs what is missing. Otherwise: says what to install.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# An interrupted dpkg run leaves /etc/containers/policy.json missing; repair it.
if [ "$(id -u)" = 0 ] && dpkg --audit 2>/dev/null | grep -q .; then
  dpkg --configure -a
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "codestudio needs these Debian packages: ${missing[*]}" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
