#!/usr/bin/env bash
# Installs what mxwarden's tests and demo need, when missing; does nothing when present.
#   apt:  postgresql-15 (server binaries for throw-away clusters; usually on the image),
#         psql (postgresql-client-15), promtool (Debian `prometheus`), headless chromium
#         (the status-page test loads the page as a browser does), prometheus-blackbox-exporter
#         (the peer of scripts/bench-daemon.sh and scripts/bench-scale.sh).
#   cargo: s3s-fs 0.14.1 (`--features binary`): a real S3-compatible server on 127.0.0.1 for
#         the bucket backup tests (0.14.1 is the newest that builds with rustc 1.95).
#   venvs under ${MXWARDEN_CACHE:-$HOME/.cache/mxwarden}, pinned by scripts/lib/requirements-*.txt:
#         venv-synapse  matrix-synapse + psycopg2-binary: a real homeserver
#         venv-tools    oidc-provider-mock 0.3.4 (stands in for MAS discovery), aiosmtpd 1.4.6
#                       (SMTP sink), prometheus_client (oracle for the exposition parser)
# A venv is complete only when its marker (.installed, holding the requirements' checksum) is
# there; the marker is written last, so an interrupted install is redone next time, and a
# changed requirements file rebuilds the venv. Runs under a lock, so concurrent runs are safe.
# Prints one line per thing installed or found; exits non-zero with a message on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${MXWARDEN_CACHE:-$HOME/.cache/mxwarden}
PYTHON=${PYTHON:-python3}

say() { echo "install-test-deps: $*"; }
die() { echo "install-test-deps: ERROR: $*" >&2; exit 1; }

mkdir -p "$CACHE" || die "cannot create $CACHE"
exec 8>"$CACHE/.install.lock"
flock 8 || die "cannot lock $CACHE/.install.lock"

# ---------------------------------------------------------------- Debian packages
declare -A apt_want=()   # package -> the file that shows it is there
apt_want[postgresql-15]=/usr/lib/postgresql/15/bin/initdb
apt_want[postgresql-client-15]=/usr/lib/postgresql/15/bin/psql
apt_want[prometheus]=/usr/bin/promtool   # the package also brings /usr/bin/prometheus: the remote-write receiver of tests/it/remote_write.rs
apt_want[chromium]=/usr/bin/chromium
apt_want[systemd]=/usr/bin/systemd-analyze   # `systemd-analyze verify` of deploy/mxwarden.service
apt_want[prometheus-blackbox-exporter]=/usr/bin/prometheus-blackbox-exporter   # the benchmarks' peer
missing=()
for pkg in postgresql-15 postgresql-client-15 prometheus chromium systemd prometheus-blackbox-exporter; do
  if [ -x "${apt_want[$pkg]}" ]; then
    say "found   $pkg (${apt_want[$pkg]})"
  else
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
  say "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2; rm -f "$log"
    die "apt-get install ${missing[*]} failed"
  fi
  rm -f "$log"
  # The packages' maintainer scripts may start their daemons where an init system allows it;
  # the tests start their own instances and need none of them.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    for unit in prometheus prometheus-blackbox-exporter postgresql; do systemctl disable --now "$unit" >/dev/null 2>&1 || true; done
  fi
  for pkg in "${missing[@]}"; do
    [ -x "${apt_want[$pkg]}" ] || die "$pkg installed but ${apt_want[$pkg]} is still missing"
    say "installed $pkg"
  done
fi

# ---------------------------------------------------------------- crates.io binaries
S3S_FS_VERSION=0.14.1
s3s_fs=$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")
if [ -x "$s3s_fs" ] && "$s3s_fs" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
  say "found   s3s-fs ($s3s_fs)"
else
  command -v cargo >/dev/null || die "cargo is needed to install s3s-fs"
  say "installing s3s-fs $S3S_FS_VERSION (cargo install)"
  log=$(mktemp)
  if ! cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --locked >"$log" 2>&1; then
    tail -n 30 "$log" >&2; rm -f "$log"
    die "cargo install s3s-fs failed"
  fi
  rm -f "$log"
  s3s_fs=$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")
  [ -x "$s3s_fs" ] || die "s3s-fs installed but not found"
  say "installed s3s-fs"
fi

# ---------------------------------------------------------------- Python venvs
# Requirement lines, normalised for comparison with `pip freeze`.
norm() { grep -v -E '^\s*(#|$)' | tr 'A-Z_' 'a-z-' | sort; }

make_venv() {
  local name=$1 req=$2
  local dir=$CACHE/$name marker=$CACHE/$name/.installed want
  [ -f "$req" ] || die "missing $req"
  want="$(sha256sum "$req" | cut -c1-64) $("$PYTHON" -c 'import sys;print("%d.%d" % sys.version_info[:2])')"
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ] && [ -x "$dir/bin/python" ]; then
    say "found   $name ($dir)"
    return
  fi
  # A venv without our marker (say, from an older version of this script) that holds exactly
  # the pinned set and works is adopted rather than rebuilt.
  if [ -x "$dir/bin/pip" ] && [ "$(norm <"$req")" = "$("$dir/bin/pip" freeze --all 2>/dev/null | grep -v -E '^(pip|setuptools|wheel)==' | norm)" ] \
     && "$dir/bin/python" -c "$3" >/dev/null 2>&1; then
    echo "$want" >"$marker.tmp" && mv "$marker.tmp" "$marker"
    say "found   $name ($dir)"
    return
  fi
  say "installing $name ($dir, from $req)"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir" || die "python3 -m venv $dir failed"
  local log=$dir/install.log
  if ! "$dir/bin/pip" install --disable-pip-version-check --no-input -r "$req" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "pip install into $name failed (log: $log)"
  fi
  shift 2
  if ! "$dir/bin/python" -c "$1" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "$name installed but does not work (log: $log)"
  fi
  echo "$want" >"$marker.tmp" && mv "$marker.tmp" "$marker"
  say "installed $name"
}

make_venv venv-synapse scripts/lib/requirements-synapse.txt \
  'import synapse.app.homeserver, psycopg2, synapse; print(synapse.__version__)'
make_venv venv-tools scripts/lib/requirements-tools.txt \
  'import oidc_provider_mock, aiosmtpd, prometheus_client'
[ -x "$CACHE/venv-tools/bin/oidc-provider-mock" ] || die "venv-tools has no oidc-provider-mock"
say "ready (cache: $CACHE)"
