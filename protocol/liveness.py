"""The liveness probe's datagrams (agent/liveness.py asks, master/liveness.py answers): a probe
is PROBE + NONCE random bytes, its answer ANSWER + the same bytes, both over UDP to the port
number of the master's listening TCP port."""

PROBE = b"gdos-alive?"
ANSWER = b"gdos-alive!"
NONCE = 8
