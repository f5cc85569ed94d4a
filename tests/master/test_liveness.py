"""The master's liveness responder: the UDP twin of a listening TCP port, answered from a thread
of its own: a probe gets its nonce back, anything else nothing."""

import socket

from master.liveness import LivenessResponder
from protocol.liveness import ANSWER, NONCE, PROBE


def test_a_probe_is_answered_with_its_nonce_and_anything_else_is_not() -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    responder = LivenessResponder.beside([tcp])
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(10)
    try:
        assert [s.getsockname() for s in responder.sockets] == [tcp.getsockname()]
        client.connect(tcp.getsockname())
        client.send(b"hello")  # not a probe
        client.send(PROBE + b"x" * (NONCE + 1))  # the wrong length
        client.send(PROBE + b"12345678")
        assert client.recv(64) == ANSWER + b"12345678"  # the first and only answer
        client.settimeout(0.5)
        client.send(PROBE + b"abcdefgh")
        assert client.recv(64) == ANSWER + b"abcdefgh"
    finally:
        client.close()
        responder.close()
        tcp.close()


def test_a_taken_udp_port_leaves_the_responder_without_it() -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(tcp.getsockname())
    try:
        responder = LivenessResponder.beside([tcp])
        assert responder.sockets == []
        responder.close()
    finally:
        taken.close()
        tcp.close()
