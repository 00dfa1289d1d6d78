#!/bin/sh
# Starts RStudio Server as the studio user: start.sh PORT WWW_ROOT_PATH.
# rserver normally runs as root with its state under /var; here every
# writable path is in a per-container folder owned by the studio user.
set -e
port="$1" root_path="$2"
state="${TMPDIR:-/tmp}/codestudio-rstudio"
mkdir -p "$state/data" "$state/db"
printf 'provider=sqlite\ndirectory=%s\n' "$state/db" > "$state/database.conf"
exec /usr/lib/rstudio-server/bin/rserver \
    --server-daemonize=0 \
    --server-user="$(id -un)" \
    --auth-none=1 \
    --www-address=0.0.0.0 --www-port="$port" \
    --www-root-path="$root_path" \
    --www-verify-user-agent=0 \
    --www-frame-origin=same \
    --server-data-dir="$state/data" \
    --server-pid-file="$state/rserver.pid" \
    --database-config-file="$state/database.conf" \
    --secure-cookie-key-file="$state/secure-cookie-key"
