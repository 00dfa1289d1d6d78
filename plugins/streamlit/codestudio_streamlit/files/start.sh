#!/bin/sh
# Starts the studio's Streamlit app: start.sh PYTHON APP PORT BASE_URL_PATH.
# The app is a starter file of the versioned zone; a container started
# without it (no sync yet, a webapp) gets the example so that it serves.
set -e
python="$1" app="$2" port="$3" base="$4"
if [ ! -f "$app" ]; then
    mkdir -p "$(dirname "$app")"
    cp /opt/codestudio/streamlit/example_app.py "$app"
fi
cd "$(dirname "$app")"
# CORS and XSRF checks compare origins with the Host the server sees, which
# is the gateway's; the gateway authenticates and serves one origin.
exec "$python" -m streamlit run "$app" \
    --server.port="$port" --server.address=0.0.0.0 \
    --server.baseUrlPath="$base" --server.headless=true \
    --server.runOnSave=true --server.fileWatcherType=poll \
    --server.enableCORS=false --server.enableXsrfProtection=false \
    --browser.gatherUsageStats=false
