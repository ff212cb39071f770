"""The socket benches' receiving end (bench/socket_clients.FrameRecorder): every frame a server sends is kept whole
however the bytes arrive, pings are answered, a close is answered once (no servers: bytes made up here)."""

import asyncio
import json

from hypothesis import given
from hypothesis import strategies as st

from bench.socket_clients import FrameRecorder


class Transport:
    """What the recorder writes, as a transport would take it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing


def server_frame(opcode: int, payload: bytes, *, final: bool = True) -> bytes:
    """A frame as a server sends it: unmasked, the length in 7, 16 or 64 bits."""
    first = bytes([(0x80 if final else 0) | opcode])
    if len(payload) < 126:
        return first + bytes([len(payload)]) + payload
    if len(payload) < 1 << 16:
        return first + bytes([126]) + len(payload).to_bytes(2, "big") + payload
    return first + bytes([127]) + len(payload).to_bytes(8, "big") + payload


def client_frame(data: bytes) -> tuple[int, bytes]:
    """A frame the recorder wrote: its opcode and unmasked payload (a client's frames are always masked)."""
    assert data[0] & 0x80 and data[1] & 0x80
    length, mask = data[1] & 0x7F, data[2:6]
    payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(data[6 : 6 + length]))
    return data[0] & 0x0F, payload


def recorded(chunks: list[bytes]) -> tuple[FrameRecorder, Transport]:
    async def feed() -> tuple[FrameRecorder, Transport]:
        transport = Transport()
        recorder = FrameRecorder(transport)
        for chunk in chunks:
            recorder.data_received(chunk)
        return recorder, transport

    return asyncio.run(feed())


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)], strict=True)]


MESSAGES = st.lists(st.text(max_size=300).map(lambda text: json.dumps({"text": text}).encode()), max_size=8)


@given(messages=MESSAGES, big=st.booleans(), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_every_message_is_kept_whole_however_its_bytes_arrive(messages, big, cuts):
    if big:
        messages = [*messages, json.dumps({"text": "x" * 70_000}).encode()]
    stream = b"".join(server_frame(0x1, message) for message in messages)

    recorder, transport = recorded(split(stream, cuts))

    assert [payload for _, payload in recorder.frames] == messages
    assert transport.written == []
    assert recorder.buffer == b""


def test_a_fragmented_message_is_kept_as_one():
    stream = server_frame(0x1, b'{"a": ', final=False) + server_frame(0x0, b"1}")
    recorder, _ = recorded([stream])
    assert [payload for _, payload in recorder.frames] == [b'{"a": 1}']


def test_a_ping_is_answered_with_a_masked_pong_of_its_payload():
    recorder, transport = recorded([server_frame(0x9, b"keepalive") + server_frame(0x1, b"{}")])
    assert [client_frame(data) for data in transport.written] == [(0xA, b"keepalive")]
    assert [payload for _, payload in recorder.frames] == [b"{}"]


def test_the_servers_close_is_recorded_and_answered_once():
    close = server_frame(0x8, (4401).to_bytes(2, "big") + b"ticket")
    recorder, transport = recorded([close, close])
    assert recorder.close_code == 4401
    assert [client_frame(data) for data in transport.written] == [(0x8, (4401).to_bytes(2, "big"))]


def test_a_connection_that_ends_without_a_close_is_abnormal():
    recorder, _ = recorded([server_frame(0x1, b"{}")])
    recorder.connection_lost(None)
    assert recorder.close_code == "abnormal"
    assert recorder.closed.done()
