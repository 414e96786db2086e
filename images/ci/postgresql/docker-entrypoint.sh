#!/usr/bin/env bash
# Entrypoint of the test cluster's PostgreSQL image, with the official image's contract:
#   POSTGRES_PASSWORD  required (or POSTGRES_HOST_AUTH_METHOD=trust): the superuser's password;
#   POSTGRES_USER      superuser name (default postgres);
#   POSTGRES_DB        database created at first start (default: POSTGRES_USER);
#   PGDATA             data directory (default /var/lib/postgresql/data);
#   POSTGRES_INITDB_ARGS  extra initdb arguments; /docker-entrypoint-initdb.d/*.sql|*.sh run once.
# An empty PGDATA is initialised (UTF8, C.UTF-8: a minimal system has no other locale, and
# without one initdb would pick SQL_ASCII), then `postgres` runs in the foreground listening on
# every address with scram-sha-256 passwords for network clients.
set -Eeuo pipefail
if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi

init_cluster() {
    local user="${POSTGRES_USER:-postgres}" db auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    db="${POSTGRES_DB:-$user}"
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        echo "error: POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
        exit 1
    fi
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    local pw=() pwfile=""
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        pwfile="$(umask 077 && mktemp)"
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
        pw=(--pwfile="$pwfile")
    fi
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list
    initdb --username="$user" "${pw[@]}" \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host="$auth" \
        ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
    [ -z "$pwfile" ] || rm -f "$pwfile"
    printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    # A private server (unix socket only) for the first-start steps.
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p 5432" start
    local psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$user")
    if [ "$db" != postgres ]; then
        "${psql[@]}" --dbname postgres --set db="$db" <<<'CREATE DATABASE :"db";'
    fi
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "running $f"; bash "$f" ;;
            *.sql) echo "running $f"; "${psql[@]}" --dbname "$db" -f "$f" ;;
            *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL initialised in $PGDATA (database $db, user $user)"
}

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    init_cluster
fi
exec "$@"
