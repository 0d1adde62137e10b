#!/usr/bin/env bash
# Installs what mxwarden's tests and demo need, when missing; does nothing when present.
#   - PostgreSQL 15 server binaries (Debian postgresql-15) for throw-away clusters
#   - promtool (Debian prometheus) for the rule conformance tests and `rules export` checks
#   - Python venvs under ${MXWARDEN_CACHE:-$HOME/.cache/mxwarden}:
#       venv-synapse: a real Synapse homeserver (PyPI matrix-synapse) on SQLite or PostgreSQL
#       venv-tools:   an OIDC provider standing in for MAS discovery, an SMTP sink,
#                     and prometheus_client (the oracle for our exposition parser)
# A venv is built under a temporary name and renamed when complete, so an interrupted
# install is redone next time. Fails loudly when something cannot be installed.
set -euo pipefail

CACHE=${MXWARDEN_CACHE:-$HOME/.cache/mxwarden}
SYNAPSE_PKGS=(matrix-synapse==1.163.2 psycopg2-binary==2.9.13)
TOOLS_PKGS=(oidc-provider-mock==0.3.4 aiosmtpd==1.4.6 prometheus_client==0.26.0)

say() { echo "install-test-deps: $*"; }

apt_missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || apt_missing+=(postgresql-15)
command -v promtool >/dev/null || apt_missing+=(prometheus)
command -v psql >/dev/null || apt_missing+=(postgresql-client-15)
if [ ${#apt_missing[@]} -gt 0 ]; then
  say "apt: installing ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
  # Debian's packages would start services; policy-rc.d on this image prevents it. Stop any anyway.
  systemctl stop prometheus postgresql 2>/dev/null || true
else
  say "apt: postgresql-15 and promtool present"
fi
[ -x /usr/lib/postgresql/15/bin/initdb ] || { say "PostgreSQL 15 is still missing"; exit 1; }
command -v promtool >/dev/null || { say "promtool is still missing"; exit 1; }

make_venv() {
  local name=$1; shift
  local dir=$CACHE/$name marker=$CACHE/$name/.complete want="$*"
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
    say "$name: present ($want)"
    return
  fi
  say "$name: installing $want"
  mkdir -p "$CACHE"
  rm -rf "$dir.partial"
  python3 -m venv "$dir.partial"
  "$dir.partial/bin/pip" install -q --disable-pip-version-check "$@"
  echo "$want" >"$dir.partial/.complete"
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
  # venv scripts carry absolute paths to the build location: rewrite them.
  grep -rlF "$dir.partial" "$dir/bin" 2>/dev/null | xargs -r sed -i "s#$dir.partial#$dir#g"
}

make_venv venv-synapse "${SYNAPSE_PKGS[@]}"
make_venv venv-tools "${TOOLS_PKGS[@]}"
say "ready (cache: $CACHE)"
