"""The sandbox's WebSocket framing (RFC 6455, server side) seen from a raw socket: the handshake, fragmented and
masked client frames, ping/pong, and the frames a server must refuse."""

import base64
import json
import os
import socket
import struct

import pytest

from brokers.sandbox.testing import start_sandbox
from brokers.sandbox.websocket import accept_key
from brokers.tests.kite_sandbox_calls import API_KEY, API_SECRET, REDIRECT_URL, kite_session

pytestmark = pytest.mark.e2e

INFY = 408065


@pytest.fixture(scope="module")
def sandbox():
    app = {"api_key": API_KEY, "api_secret": API_SECRET, "redirect_url": REDIRECT_URL}
    with start_sandbox(apps=[app], tick_seconds=None, ticker_seconds=0.1) as handle:
        yield handle


@pytest.fixture(scope="module")
def access_token(sandbox):
    return kite_session(sandbox).access_token


def test_the_accept_key_is_rfc_6455s_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class RawClient:
    def __init__(self, sandbox, access_token: str):
        host, port = sandbox.url.removeprefix("http://").split(":")
        self.socket = socket.create_connection((host, int(port)), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.socket.sendall(
            (
                f"GET /ws?api_key={API_KEY}&access_token={access_token} HTTP/1.1\r\nHost: {host}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.reader = self.socket.makefile("rb")
        self.status = self.reader.readline().decode()
        self.headers = {}
        while (line := self.reader.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.expected_accept = accept_key(key)

    def send(self, opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> None:
        header = bytes([(0x80 if fin else 0) | opcode])
        length = len(payload)
        mask_bit = 0x80 if masked else 0
        if length < 126:
            header += bytes([mask_bit | length])
        elif length < 1 << 16:
            header += bytes([mask_bit | 126]) + struct.pack(">H", length)
        else:
            header += bytes([mask_bit | 127]) + struct.pack(">Q", length)
        if masked:
            mask = os.urandom(4)
            payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
            header += mask
        self.socket.sendall(header + payload)

    def receive(self) -> tuple[int, bytes]:
        first, second = self.reader.read(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", self.reader.read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self.reader.read(8))[0]
        return first & 0x0F, self.reader.read(length)

    def receive_until(self, opcode: int, predicate=lambda payload: True) -> bytes:
        for _ in range(200):
            got, payload = self.receive()
            if got == opcode and predicate(payload):
                return payload
        raise AssertionError(f"no frame of opcode {opcode}")


def test_the_upgrade_answers_101_with_the_accept_key_and_heartbeats_when_idle(sandbox, access_token):
    client = RawClient(sandbox, access_token)
    assert client.status.startswith("HTTP/1.1 101")
    assert client.headers["sec-websocket-accept"] == client.expected_accept
    assert client.receive() == (0x2, b"\x00")


def test_a_fragmented_subscribe_is_reassembled_and_a_ping_is_answered(sandbox, access_token):
    client = RawClient(sandbox, access_token)
    message = json.dumps({"a": "subscribe", "v": [INFY]}).encode()
    client.send(0x1, message[:7], fin=False)
    client.send(0x9, b"are you there")  # a control frame between the fragments
    client.send(0x0, message[7:])
    assert client.receive_until(0xA) == b"are you there"
    packet = client.receive_until(0x2, lambda payload: len(payload) > 1)
    count, length, token = struct.unpack(">HHI", packet[:8])
    assert (count, length, token) == (1, 44, INFY)


def test_an_unmasked_client_frame_is_a_protocol_error(sandbox, access_token):
    client = RawClient(sandbox, access_token)
    client.send(0x1, b'{"a": "subscribe", "v": [408065]}', masked=False)
    payload = client.receive_until(0x8)
    assert struct.unpack(">H", payload[:2])[0] == 1002


def test_a_close_frame_is_answered_with_one(sandbox, access_token):
    client = RawClient(sandbox, access_token)
    client.send(0x8, struct.pack(">H", 1000))
    assert struct.unpack(">H", client.receive_until(0x8)[:2])[0] == 1000


def test_an_upgrade_without_a_key_is_refused(sandbox, access_token):
    host, port = sandbox.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(
            f"GET /ws?api_key={API_KEY}&access_token={access_token} HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n".encode()
        )
        assert raw.makefile("rb").readline().startswith(b"HTTP/1.1 400")
