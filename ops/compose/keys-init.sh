#!/bin/sh
# One-shot: create the processor key, a demo producer key and the producer key
# set in the shared /keys volume (kept across restarts), then the topics.
set -eu
cd /keys
[ -f processor-1.secret ] || auditchain keygen --dir /keys --key-id processor-1
[ -f demo-producer.secret ] || auditchain keygen --dir /keys --key-id demo-producer
if [ ! -f producers.toml ]; then
  printf '[[keys]]\nkey_id = "demo-producer"\npublic_key = "%s"\ntenants = ["*"]\n' "$(cat demo-producer.pub)" > producers.toml
fi
# The bearer token POST /admin/* needs (the processors bind 0.0.0.0 inside
# the compose network): private to the app user, like the secret keys.
if [ ! -f admin.token ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > admin.token)
fi
auditchain topics --config /etc/auditchain/config.toml --create-input 6
