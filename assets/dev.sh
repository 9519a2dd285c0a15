#!/usr/bin/env bash
# The project's two entry points on a fresh Debian machine:
#   bash assets/dev.sh demo     installs what is missing, builds, and runs the demo (the main job)
#   bash assets/dev.sh test     installs what is missing and runs the whole test suite
# and the way to ship it:
#   bash assets/dev.sh package  builds the Debian package, target/debian/bucardo-bootstrap_*.deb
# It installs the Debian packages each needs when they are missing (with sudo when not root):
# postgresql-15, postgresql-plperl-15, bucardo and tmux for the demo and the tests; dpkg-dev
# (dpkg-shlibdeps, strip) to build the package, and man-db for the tests to read its man pages.
# It needs a Rust toolchain (cargo) on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  demo) wanted=(postgresql-15 postgresql-plperl-15 bucardo tmux) ;;
  test) wanted=(postgresql-15 postgresql-plperl-15 bucardo tmux dpkg-dev man-db) ;;
  package) wanted=(dpkg-dev) ;;
  *) wanted=() ;;
esac
need=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # Debian's postgresql package would start a cluster on 5432; nothing here needs it.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is missing: install Rust from https://rustup.rs" >&2; exit 1; }

case "${1:-}" in
  demo)
    shift
    cargo build --release --locked
    exec ./target/release/bucardo-bootstrap demo "$@"
    ;;
  test)
    shift
    # One test binary at a time: each starts its own clusters, and the machine has 2 cores.
    # tests/package.rs installs the package with dpkg (as root) and removes it again.
    exec cargo test --locked --no-fail-fast "$@" -- --test-threads=2
    ;;
  package)
    shift
    # The release build, then the package from it (xtask/src/deb.rs).
    exec cargo xtask deb "$@"
    ;;
  *)
    echo "usage: bash assets/dev.sh demo|test|package" >&2
    exit 2
    ;;
esac
