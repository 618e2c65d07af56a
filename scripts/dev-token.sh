#!/bin/sh
# DEV ONLY: prints an UNSIGNED bearer token for a gateway running with JWT_SKIP_VERIFY=true (the
# docker-compose stack). A gateway that verifies signatures refuses it with 401.
#   scripts/dev-token.sh [sub] [lifetime_seconds]     e.g. TOKEN=$(scripts/dev-token.sh alice)
set -eu
sub="${1:-dev-user}"
exp=$(( $(date +%s) + ${2:-3600} ))
b64() { printf '%s' "$1" | base64 | tr '+/' '-_' | tr -d '=\n'; }
printf '%s.%s.%s\n' "$(b64 '{"alg":"RS256","typ":"JWT","kid":"dev"}')" \
  "$(b64 "{\"sub\":\"$sub\",\"exp\":$exp}")" "$(b64 'unsigned-dev-token')"
