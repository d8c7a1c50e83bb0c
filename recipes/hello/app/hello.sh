#!/bin/sh
# The enclave's program in the demo: say hello on the console, with what the
# enclave can see of itself.
echo "hello from the enclave: $(uname -s) $(uname -r), $(wc -l < /etc/passwd) users, built at SOURCE_DATE_EPOCH=@SOURCE_DATE_EPOCH@"
