#!/usr/bin/env bash
# System packages a fresh machine may lack, from Debian/Ubuntu (apt), never from a tool's own download:
# Chromium for the browser tests, and Mesa's EGL for the viewer's offscreen rendering (CPU renderer; no
# GPU or X server). Used by `make test`, `make demo` and .ci/run. Installs nothing when all is present.
# As root it runs apt-get directly; otherwise through sudo when available, else it says what to install.
set -euo pipefail

need=()
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    need+=(chromium)
fi
if ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q libEGL_mesa.so; then
    need+=(libegl1 libegl-mesa0 libgl1-mesa-dri)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${need[*]}; no apt-get on this machine: install them with your package manager" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo"
    elif command -v sudo >/dev/null 2>&1 && [ -t 0 ]; then
        sudo="sudo"  # interactive: sudo asks for the password
    else
        echo "system-deps: missing ${need[*]}; run as root (or with sudo): apt-get install -y ${need[*]}" >&2
        exit 1
    fi
fi
echo "system-deps: installing ${need[*]} (apt)" >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
