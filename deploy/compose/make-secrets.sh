#!/bin/sh
# Writes the two secrets compose.yaml mounts: the session cookie key and the IdP client secret
# (the demo IdP registers its client with whatever this file says). Readable by the
# containers' non-root users; kept out of git by secrets/.gitignore.
set -eu
cd "$(dirname "$0")"
mkdir -p secrets
umask 022
[ -s secrets/cookie_secret ] || openssl rand -base64 32 > secrets/cookie_secret
[ -s secrets/idp_client_secret ] || openssl rand -hex 24 > secrets/idp_client_secret
echo "secrets in $(pwd)/secrets"
