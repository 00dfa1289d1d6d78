#!/bin/sh
# Starts the studio's Gradio app: start.sh PYTHON APP PORT ROOT_PATH.
# The app is a starter file of the versioned zone; a container started
# without it (no sync yet, a webapp) gets the example so that it serves.
# The app restarts when a file of its folder changes (an edit, a sync).
set -e
python="$1" app="$2" port="$3" root="$4"
if [ ! -f "$app" ]; then
    mkdir -p "$(dirname "$app")"
    cp /opt/codestudio/gradio/example/app.py "$app"
fi
cd "$(dirname "$app")"
export GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT="$port" GRADIO_ROOT_PATH="$root"
export GRADIO_ANALYTICS_ENABLED=False
exec python3 /opt/codestudio/gradio/restart_on_change.py "$(dirname "$app")" -- "$python" "$app"
