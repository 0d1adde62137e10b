#!/usr/bin/env bash
# synapse-init.sh DIR CLIENT_PORT METRICS_PORT [PG_SOCKET_DIR PG_PORT PG_DB]
#
# Writes DIR/homeserver.yaml for a throw-away local Synapse and its signing key:
#   - server_name `localhost`; client + federation resources on 127.0.0.1:CLIENT_PORT
#     (so /health, /_matrix/client/versions and /_matrix/federation/v1/version answer);
#   - a `type: metrics` listener on 127.0.0.1:METRICS_PORT, enable_metrics: true;
#   - a random registration_shared_secret, also written to DIR/shared_secret
#     (use scripts/lib/synapse-admin-token.py to get an admin token);
#   - raised rate limits (room creation too); no key servers and no federation (nothing goes off the machine);
#   - its own log config: DIR/homeserver.log.
# Database: SQLite (DIR/homeserver.db) without the PG arguments; otherwise psycopg2 on that
# PostgreSQL, whose database PG_DB (default synapse) this script creates with the C collation
# Synapse requires (user postgres, trust auth, as scripts/lib/pg-init.sh sets up).
# Prints nothing on success. Start Synapse in the foreground, e.g. under guard.py:
#   guard.py -- $VENV/bin/python -m synapse.app.homeserver -c DIR/homeserver.yaml
set -euo pipefail
if [ $# -ne 3 ] && [ $# -ne 5 ] && [ $# -ne 6 ]; then
  echo "usage: $0 DIR CLIENT_PORT METRICS_PORT [PG_SOCKET_DIR PG_PORT [PG_DB]]" >&2
  exit 2
fi
dir=$1 cport=$2 mport=$3
pg_socket=${4:-} pg_port=${5:-} pg_db=${6:-synapse}
for p in "$cport" "$mport" ${pg_port:+"$pg_port"}; do
  [[ $p =~ ^[0-9]+$ ]] || { echo "synapse-init.sh: not a port: $p" >&2; exit 2; }
done
[[ $pg_db =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "synapse-init.sh: bad database name: $pg_db" >&2; exit 2; }

mkdir -p "$dir/media_store"
dir=$(cd "$dir" && pwd)

# Secrets, and an ed25519 signing key in Synapse's key file format ("ed25519 a_XXXX <seed,
# unpadded base64>"), written with the standard library: importing Synapse to have it do
# this (--generate-keys) costs 2-3 s.
read -r secret macaroon form key_version key_seed < <(python3 -c '
import base64, secrets, string
alnum = string.ascii_letters + string.digits
print(secrets.token_hex(32), secrets.token_hex(32), secrets.token_hex(32),
      "a_" + "".join(secrets.choice(alnum) for _ in range(4)),
      base64.b64encode(secrets.token_bytes(32)).decode().rstrip("="))')
(umask 077; echo "$secret" >"$dir/shared_secret"; echo "ed25519 $key_version $key_seed" >"$dir/localhost.signing.key")

if [ -n "$pg_socket" ]; then
  [ -n "$pg_port" ] || { echo "synapse-init.sh: PG_SOCKET_DIR needs PG_PORT" >&2; exit 2; }
  psql -X -q -v ON_ERROR_STOP=1 -h "$pg_socket" -p "$pg_port" -U postgres -d postgres \
    -c "CREATE DATABASE \"$pg_db\" ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0" >/dev/null
  database="{name: psycopg2, args: {user: postgres, dbname: $pg_db, host: '$pg_socket', port: $pg_port, cp_min: 1, cp_max: 5}}"
else
  database="{name: sqlite3, args: {database: '$dir/homeserver.db'}}"
fi

cat >"$dir/homeserver.yaml" <<YAML
# Written by scripts/lib/synapse-init.sh: a throw-away homeserver for tests and the demo.
server_name: "localhost"
public_baseurl: "http://127.0.0.1:$cport/"
pid_file: "$dir/homeserver.pid"
listeners:
  - port: $cport
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources: [{names: [client, federation], compress: false}]
  - port: $mport
    bind_addresses: ['127.0.0.1']
    type: metrics
database: $database
log_config: "$dir/log.config"
media_store_path: "$dir/media_store"
signing_key_path: "$dir/localhost.signing.key"
registration_shared_secret: "$secret"
macaroon_secret_key: "$macaroon"
form_secret: "$form"
enable_registration: false
enable_metrics: true
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
url_preview_enabled: false
bcrypt_rounds: 4            # fast password hashing: registration and login in tests
rc_message: {per_second: 1000, burst_count: 1000}
rc_registration: {per_second: 1000, burst_count: 1000}
rc_login:
  address: {per_second: 1000, burst_count: 1000}
  account: {per_second: 1000, burst_count: 1000}
  failed_attempts: {per_second: 1000, burst_count: 1000}
rc_joins:
  local: {per_second: 1000, burst_count: 1000}
  remote: {per_second: 1000, burst_count: 1000}
rc_admin_redaction: {per_second: 1000, burst_count: 1000}
rc_room_creation: {per_second: 1000, burst_count: 1000}
rc_invites:
  per_room: {per_second: 1000, burst_count: 1000}
  per_user: {per_second: 1000, burst_count: 1000}
  per_issuer: {per_second: 1000, burst_count: 1000}
YAML

cat >"$dir/log.config" <<YAML
version: 1
formatters:
  precise: {format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'}
handlers:
  file: {class: logging.FileHandler, formatter: precise, filename: '$dir/homeserver.log', encoding: utf8}
root: {level: INFO, handlers: [file]}
disable_existing_loggers: false
YAML
