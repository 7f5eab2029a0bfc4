#!/bin/sh
# The compose files' secrets, one random value a file, written only where missing:
#
#   deploy/secrets.sh [DIR]        # DIR: $SHIFTWATCH_SECRETS_DIR, else deploy/secrets
#
#   feedback_token          the bearer token clients send to /feedback
#   redis_password          the fleet's Redis (docker-compose.fleet.yml)
#   grafana_admin_password  Grafana's admin user
#
# The folder is private to its owner (0700); the files in it are readable (0644) because the
# engine bind-mounts each file into its container, where other users (uid 1034, 999, 472) read
# it; the folder's mode keeps the host's other users out. Hex values: safe in a Redis URL and in
# redis.conf without quoting. Bring your own value: write it to the file instead (one line).
set -eu
dir=${1:-${SHIFTWATCH_SECRETS_DIR:-$(dirname "$0")/secrets}}
mkdir -p "$dir"
chmod 0700 "$dir"
for name in feedback_token redis_password grafana_admin_password; do
  file="$dir/$name"
  if [ ! -s "$file" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$file"
    echo "$file: written"
  fi
  chmod 0644 "$file"
done
