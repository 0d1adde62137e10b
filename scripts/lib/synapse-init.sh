#!/usr/bin/env bash
# synapse-init.sh DIR CLIENT_PORT METRICS_PORT [PG_SOCKET_DIR PG_PORT PG_DB]
# Writes DIR/homeserver.yaml for a local Synapse (server_name `localhost`, client + federation
# resources on 127.0.0.1:CLIENT_PORT, a metrics listener on 127.0.0.1:METRICS_PORT, a
# registration shared secret in DIR/shared_secret), on SQLite or on the given PostgreSQL
# (whose database it creates), and generates the signing key. Start Synapse with
#   $VENV/bin/python -m synapse.app.homeserver -c DIR/homeserver.yaml
set -euo pipefail
dir=$1 cport=$2 mport=$3
pg_socket=${4:-} pg_port=${5:-} pg_db=${6:-synapse}
VENV=${MXWARDEN_CACHE:-$HOME/.cache/mxwarden}/venv-synapse
[ -x "$VENV/bin/python" ] || { echo "no Synapse venv at $VENV: run scripts/install-test-deps.sh" >&2; exit 1; }
mkdir -p "$dir"
rand() { python3 -c 'import secrets;print(secrets.token_hex(32))'; }
secret=$(rand)
echo "$secret" >"$dir/shared_secret"
if [ -n "$pg_socket" ]; then
  psql -X -q -v ON_ERROR_STOP=1 -h "$pg_socket" -p "$pg_port" -U postgres -d postgres \
    -c "CREATE DATABASE \"$pg_db\" ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0" >/dev/null
  database="{name: psycopg2, args: {user: postgres, dbname: $pg_db, host: $pg_socket, port: $pg_port, cp_min: 1, cp_max: 5}}"
else
  database="{name: sqlite3, args: {database: $dir/homeserver.db}}"
fi
cat >"$dir/homeserver.yaml" <<YAML
server_name: "localhost"
public_baseurl: "http://127.0.0.1:$cport/"
pid_file: $dir/homeserver.pid
listeners:
  - {port: $cport, bind_addresses: ['127.0.0.1'], type: http, tls: false, x_forwarded: false,
     resources: [{names: [client, federation], compress: false}]}
  - {port: $mport, bind_addresses: ['127.0.0.1'], type: metrics}
database: $database
log_config: "$dir/log.config"
media_store_path: $dir/media_store
signing_key_path: "$dir/localhost.signing.key"
registration_shared_secret: "$secret"
enable_registration: false
enable_metrics: true
report_stats: false
macaroon_secret_key: "$(rand)"
form_secret: "$(rand)"
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
rc_message: {per_second: 1000, burst_count: 1000}
rc_login:
  address: {per_second: 1000, burst_count: 1000}
  account: {per_second: 1000, burst_count: 1000}
  failed_attempts: {per_second: 1000, burst_count: 1000}
rc_registration: {per_second: 1000, burst_count: 1000}
rc_joins: {local: {per_second: 1000, burst_count: 1000}, remote: {per_second: 1000, burst_count: 1000}}
YAML
cat >"$dir/log.config" <<YAML
version: 1
formatters: {precise: {format: '%(asctime)s - %(name)s - %(levelname)s - %(request)s - %(message)s'}}
handlers: {file: {class: logging.FileHandler, formatter: precise, filename: $dir/homeserver.log}}
root: {level: INFO, handlers: [file]}
disable_existing_loggers: false
YAML
"$VENV/bin/python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" --generate-keys >"$dir/keys.log" 2>&1 \
  || { cat "$dir/keys.log" >&2; exit 1; }
