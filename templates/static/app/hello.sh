#!/bin/sh
# The enclave's program: replace with yours (a script for the busybox root
# filesystem, or a statically linked binary).
echo "hello from the enclave"
