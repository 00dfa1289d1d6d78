#!/bin/sh
# Serves the studio's notebooks with Voila: start.sh PYTHON FOLDER PORT BASE_PATH.
# The folder is in the versioned zone; a container started without it (no
# sync yet, a webapp) gets the example notebook so that it serves.
set -e
python="$1" folder="$2" port="$3" base="$4"
if [ ! -d "$folder" ] || [ -z "$(ls -A "$folder")" ]; then
    mkdir -p "$folder"
    cp /opt/codestudio/voila/example/app.ipynb "$folder/app.ipynb"
fi
cd "$folder"
# Voila serves the full browser path (the gateway passes it unchanged).
exec "$python" -m voila --no-browser --Voila.ip=0.0.0.0 --port="$port" \
    --base_url="$base/" "$folder"
