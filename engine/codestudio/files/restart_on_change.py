"""Run an app and restart it whenever a file of its folder changes (stdlib only).

    restart_on_change.py FOLDER -- COMMAND [ARG...]

Web app blocks (``gradio``, ``dash``) run the user's app through it, so an
edit of the app (in the studio, or synced from the server, which replaces
the file) is served without restarting the studio. Files are compared by
(mtime, size, inode) every second; hidden files and ``__pycache__`` are
ignored. A change stops the app (SIGTERM, then SIGKILL after 10 s) and
starts it again. When the app exits by itself (a typo in an edit), this
waits for the next change instead of exiting, so a broken edit never
becomes a restart loop. SIGTERM/SIGINT stop the app and this script.
"""

import os
import signal
import subprocess
import sys
import time


def snapshot(folder):
    state = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for name in filenames:
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            state[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return state


def stop(child):
    if child is None or child.poll() is not None:
        return
    os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def main(argv):
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: restart_on_change.py FOLDER -- COMMAND [ARG...]")
    folder, command = argv[0], argv[2:]
    child = None

    def on_signal(signum, frame):
        stop(child)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    seen = snapshot(folder)
    child = subprocess.Popen(command, start_new_session=True)
    while True:
        time.sleep(1)
        now = snapshot(folder)
        if child.poll() is not None and now == seen:
            continue  # exited by itself: wait for an edit
        if now != seen:
            print(f"restart_on_change: {folder} changed, restarting the app", file=sys.stderr, flush=True)
            stop(child)
            seen = now
            child = subprocess.Popen(command, start_new_session=True)


if __name__ == "__main__":
    main(sys.argv[1:])
