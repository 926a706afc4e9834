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
auditchain topics --config /etc/auditchain/config.toml --create-input 6
