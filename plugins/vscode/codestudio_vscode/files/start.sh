#!/bin/sh
# Starts code-server for the codestudio vscode block.
# The user's VS Code settings (settings.json, keybindings.json, snippets/)
# live in the user-versioned zone so they follow the user to every studio;
# the rest of the user data dir (caches, logs, sqlite state) stays local.
set -e
data="${CODESTUDIO_VSCODE_DATA:-$HOME/.local/share/code-server}"
settings="${CODESTUDIO_VSCODE_SETTINGS:?}"
mkdir -p "$data/User" "$settings/snippets"
for name in settings.json keybindings.json snippets; do
    link="$data/User/$name"
    [ -L "$link" ] && continue
    # Keep what a previous run wrote locally if the zone has nothing yet.
    if [ -e "$link" ] && [ ! -e "$settings/$name" ]; then
        mv "$link" "$settings/$name"
    fi
    rm -rf "$link"
    ln -s "$settings/$name" "$link"
done
exec /opt/codestudio/vscode/bin/code-server --user-data-dir "$data" "$@"
