#!/bin/sh
# codestudio build tool (mounted into RUN steps at build time, never part of an image):
#
#   install-python PYTHON [pip install arguments: -r FILE, requirements ...]
#   install-python --venv CREATOR PREFIX [pip install arguments]
#
# installs into the environment of the interpreter PYTHON, with uv when the
# build tools carry it, else with PYTHON's own pip. With --venv it first
# creates the environment PREFIX with the interpreter CREATOR (as
# `CREATOR -m venv PREFIX` does) and installs into it. See docs/building.md.
set -eu

tools=/opt/codestudio-build
settings=/run/codestudio-build
creator=
if [ "$1" = --venv ]; then
    creator=$2
    prefix=$3
    shift 3
    python=$prefix/bin/python
else
    python=$1
    shift
fi

installer=pip
if [ -x "$tools/uv/bin/uv" ] && [ "${CODESTUDIO_INSTALLER:-uv}" = uv ]; then
    installer=uv
fi

# A pip configuration the template put into the image (e.g. a dockerfile
# block copying pip.conf to /etc/pip.conf) is the template's own index
# choice: pip honours it as it always did, and the host's settings stay out.
own_config=
for f in /etc/pip.conf /etc/xdg/pip/pip.conf "${HOME:-/root}/.config/pip/pip.conf" "${HOME:-/root}/.pip/pip.conf"; do
    if [ -f "$f" ]; then
        own_config=$f
        break
    fi
done
if [ -n "$own_config" ] && [ "$installer" = uv ]; then
    echo "codestudio: $own_config in the image configures pip: installing with pip, which reads it" >&2
    installer=pip
fi

indexes="the default index (https://pypi.org/simple)"
if [ -z "$own_config" ] && [ -s "$settings/indexes.txt" ]; then
    indexes=$(cat "$settings/indexes.txt")
elif [ -n "$own_config" ]; then
    indexes="those set in $own_config"
fi

failed() {
    status=$?
    echo "codestudio: installing Python packages into $python with $installer failed (exit $status)" >&2
    echo "codestudio: package indexes: $indexes" >&2
    exit "$status"
}

# `python -m venv` spends most of its time in ensurepip, which installs the wheels the
# interpreter bundles with pip itself. uv installs the same files (the same versions:
# ensurepip-wheels.py asks ensurepip which) offline in a fraction of that; anything
# unexpected falls back to `python -m venv` as it is.
if [ -n "$creator" ]; then
    made=
    clear=
    if [ ! -e "$prefix" ]; then
        # A fallback after a failed seed starts over: what the seed copied is not trusted.
        clear=--clear
    fi
    if [ "$installer" = uv ] && wheels=$("$creator" "$tools/bin/ensurepip-wheels.py") \
        && "$creator" -m venv --without-pip "$prefix"; then
        # The download cache, when the step has it, keeps the unpacked wheels: the next env
        # copies them (0.1 s instead of 0.7-1.4 s of unzipping). What it copied is checked
        # against RECORD like any install from the cache; damaged entries are cleaned
        # from the cache and unpacked again.
        seed_cache=UV_NO_CACHE=1
        if [ -d /var/cache/codestudio/uv ]; then
            seed_cache=UV_CACHE_DIR=/var/cache/codestudio/uv
        fi
        seed() {
            seed_start=$(date +%s)
            seed_bad=
            # shellcheck disable=SC2086
            env UV_NO_CONFIG=1 "$seed_cache" UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1 UV_COMPILE_BYTECODE=1 \
                UV_LINK_MODE=copy "$tools/uv/bin/uv" pip install --quiet --python "$python" --offline --no-index \
                --no-deps --reinstall $wheels || return 1
            seed_bad=$("$python" "$tools/bin/verify-record.py" "$((seed_start - 1))")
        }
        if seed || { [ -n "$seed_bad" ] && [ "$seed_cache" != UV_NO_CACHE=1 ] \
            && echo "codestudio: damaged files from the download cache in: $(echo $seed_bad); unpacking them again" >&2 \
            && for dist in $seed_bad; do env UV_NO_CONFIG=1 "$seed_cache" "$tools/uv/bin/uv" cache clean "$dist" >&2 || true; done \
            && seed; }; then
            made=1
            # What `python -m venv` would have recorded as the command that made the env.
            "$creator" -c 'import sys; p = sys.argv[1]; t = open(p).read(); open(p, "w").write(t.replace(" --without-pip ", " "))' \
                "$prefix/pyvenv.cfg" || true
        else
            echo "codestudio: installing $(echo $wheels) with uv failed: creating $prefix with $creator -m venv" >&2
        fi
    fi
    if [ -z "$made" ]; then
        # shellcheck disable=SC2086
        "$creator" -m venv $clear "$prefix"
    fi
    if [ $# -eq 0 ]; then
        exit 0
    fi
fi

if [ "$installer" = uv ]; then
    export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
    # The build mounts the host's CA bundle over the system one: trust the system store.
    export UV_SYSTEM_CERTS=1
    if [ -z "$own_config" ] && [ -f "$settings/uv.toml" ]; then
        export UV_CONFIG_FILE="$settings/uv.toml"
    else
        export UV_NO_CONFIG=1
    fi
    if [ -d /var/cache/codestudio/uv ]; then
        export UV_CACHE_DIR=/var/cache/codestudio/uv
    else
        export UV_NO_CACHE=1
    fi
    start=$(date +%s)
    "$tools/uv/bin/uv" pip install --python "$python" "$@" || failed
    # uv copies files from its cache without checking them again: a damaged cache
    # entry would end up in the image. Check what was installed against RECORD,
    # and fetch anything damaged afresh.
    if ! bad=$("$python" "$tools/bin/verify-record.py" "$((start - 1))"); then
        echo "codestudio: damaged files from the download cache in: $bad; downloading them again" >&2
        refresh=
        for dist in $bad; do
            "$tools/uv/bin/uv" cache clean "$dist" >&2 || true
            refresh="$refresh --reinstall-package $dist --refresh-package $dist"
        done
        start=$(date +%s)
        # shellcheck disable=SC2086
        "$tools/uv/bin/uv" pip install --python "$python" $refresh "$@" || failed
        if ! bad=$("$python" "$tools/bin/verify-record.py" "$((start - 1))"); then
            echo "codestudio: installed files of $bad do not match their RECORD after a fresh download" >&2
            exit 1
        fi
    fi
else
    if [ -z "$own_config" ] && [ -f "$settings/pip.conf" ]; then
        export PIP_CONFIG_FILE="$settings/pip.conf"
    fi
    if [ -d /var/cache/codestudio/pip ]; then
        export PIP_CACHE_DIR=/var/cache/codestudio/pip
    else
        export PIP_NO_CACHE_DIR=1
    fi
    "$python" -m pip install --disable-pip-version-check --no-input "$@" || failed
fi
