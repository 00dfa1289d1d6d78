#!/bin/sh
# Starts the studio's Dash app: start.sh PYTHON APP PORT BASE_PATH.
# The app is a starter file of the versioned zone; a container started
# without it (no sync yet, a webapp) gets the example so that it serves.
# The app restarts when a file of its folder changes (an edit, a sync).
set -e
python="$1" app="$2" port="$3" base="$4"
if [ ! -f "$app" ]; then
    mkdir -p "$(dirname "$app")"
    cp /opt/codestudio/dash/example/app.py "$app"
fi
cd "$(dirname "$app")"
# Dash serves the full browser path (the gateway passes it unchanged).
export DASH_URL_BASE_PATHNAME="$base/" HOST=0.0.0.0 PORT="$port"
exec python3 /opt/codestudio/dash/restart_on_change.py "$(dirname "$app")" -- "$python" "$app"
