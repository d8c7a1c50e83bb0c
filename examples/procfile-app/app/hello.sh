#!/bin/sh
# The enclave's program: prints its greeting (`run` gives it) forever.
greeting=hello
[ "$1" = "--greeting" ] && greeting="$2"
while :; do
    echo "$greeting from an enclave built from a Procfile"
    sleep 60
done
