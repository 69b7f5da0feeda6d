#!/usr/bin/env bash
# Builds the Python environment that kernels run from: `make kernel-env` calls this.
#
# Kernels run as unprivileged uids inside bubblewrap, so their Python must be readable by
# anyone: it is built from Debian's python3 (the server's own interpreter may live under a
# private home), and when this checkout lies where other uids cannot pass (under /root, say),
# the environment is built in a shared folder and ./.kernel-env points to it.
set -euo pipefail
link="$1"            # .kernel-env
python="$2"          # /usr/bin/python3
shared="${3:-/opt/clarityhire/kernel-env}"
packages=(ipykernel bash_kernel)

reachable() {  # every folder from / down to $1 is searchable by others
  local dir
  dir="$(cd "$1" && pwd -P)"
  while [ "$dir" != "/" ]; do
    [ "$(( $(stat -c '%a' "$dir") % 10 & 1 ))" -eq 1 ] || return 1
    dir="$(dirname "$dir")"
  done
}

if reachable .; then
  target="$link"
else
  target="$shared"
  mkdir -p "$(dirname "$target")"
  chmod 755 "$(dirname "$target")"
  [ -L "$link" ] || [ ! -e "$link" ] || rm -rf "$link"
  ln -sfn "$target" "$link"
fi
[ -x "$target/bin/python" ] || "$python" -m venv "$target"
"$target/bin/python" -m pip install -q --upgrade pip
"$target/bin/python" -m pip install -q "${packages[@]}"
chmod -R a+rX "$target"
