"""The Confluent framing's hostile input, without a registry or with one that fails: a
truncated header, an id nobody knows, a registry that refuses, hangs or answers garbage.
Each is a DecodeError with a stable code, in bounded time, never another exception.
(tests/integration/test_schema_registry.py runs the same codec against a real registry.)"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import Codec, DecodeError
from codec.confluent import REGISTRY_DOWN_RETRY_MS, Framing, SchemaFetcher, SchemaRegistryError, confluent_header
from foundation.schema_registry import RegistryClient, codec_for
from foundation.settings import Settings
from ledger import commands

CODEC = Codec()
DEPOSIT = commands.Deposit(command_id="c", dedup_id="d", account_id="a", amount=1, currency="USD")
AVRO_BODY = CODEC.encode(DEPOSIT)[10:]  # the same Avro binary in either framing
SHORT_TIMEOUT_MS = 300


class Listener:
    """A real TCP server on 127.0.0.1 that accepts connections and counts them; it answers
    each with `reply` (nothing at all if None) and then waits for the client to go."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.connections = 0
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen()
        self._server.settimeout(0.1)
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}/apis/ccompat/v7"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._open.append(connection)
            if self.reply is not None:
                connection.recv(65536)
                connection.sendall(self.reply)
                connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for connection in self._open:
            connection.close()
        self._server.close()


@pytest.fixture
def silent_registry() -> Iterator[Listener]:
    listener = Listener(reply=None)
    yield listener
    listener.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/apis/ccompat/v7"


def decode_error_code(codec: Codec, data: bytes) -> str:
    with pytest.raises(DecodeError) as raised:
        codec.decode(data)
    return str(raised.value.code)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x00", "UNDECODABLE"),  # a Confluent magic byte and nothing else
        (b"\x00\x00\x00\x01", "UNDECODABLE"),  # a schema id cut short
        (confluent_header(7) + AVRO_BODY, "UNKNOWN_SCHEMA"),  # an id, and no registry to ask
        (b"\x01" + AVRO_BODY, "UNDECODABLE"),  # neither framing
        (b"\xc4\x01" + AVRO_BODY, "UNDECODABLE"),
    ],
)
def test_confluent_headers_without_a_registry(data: bytes, code: str) -> None:
    assert decode_error_code(CODEC, data) == code


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_confluent_magic_byte_never_escape_as_other_exceptions(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        CODEC.decode(b"\x00" + data)


def test_a_registry_that_refuses_connections_is_registry_unavailable() -> None:
    codec = Codec(registry=RegistryClient(closed_port_url(), timeout_ms=SHORT_TIMEOUT_MS))
    assert decode_error_code(codec, confluent_header(1) + AVRO_BODY) == "REGISTRY_UNAVAILABLE"
    assert codec.decode(CODEC.encode(DEPOSIT)) == DEPOSIT  # single-object needs no registry


def test_a_registry_that_never_answers_costs_one_bounded_wait_then_fails_at_once(silent_registry: Listener) -> None:
    codec = Codec(registry=RegistryClient(silent_registry.url, timeout_ms=SHORT_TIMEOUT_MS))
    assert decode_error_code(codec, confluent_header(1) + AVRO_BODY) == "REGISTRY_UNAVAILABLE"
    # Within the back-off, other new ids fail without another request (a flood of them
    # cannot turn into a flood of waits).
    for schema_id in range(2, 50):
        assert decode_error_code(codec, confluent_header(schema_id) + AVRO_BODY) == "REGISTRY_UNAVAILABLE"
    assert silent_registry.connections == 1


def test_the_registry_is_tried_again_after_the_back_off(silent_registry: Listener) -> None:
    now = [1000.0]
    fetcher = SchemaFetcher(RegistryClient(silent_registry.url, timeout_ms=SHORT_TIMEOUT_MS), clock=lambda: now[0])
    for _ in range(2):
        with pytest.raises(SchemaRegistryError):
            fetcher.fetch(1)
    assert silent_registry.connections == 1
    now[0] += REGISTRY_DOWN_RETRY_MS / 1000
    with pytest.raises(SchemaRegistryError):
        fetcher.fetch(1)
    assert silent_registry.connections == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"this is not HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!",
        b'HTTP/1.1 200 OK\r\nContent-Length: 21\r\n\r\n{"schema": "{broken"}',
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_a_registry_answering_garbage_is_registry_unavailable(reply: bytes) -> None:
    listener = Listener(reply=reply)
    try:
        codec = Codec(registry=RegistryClient(listener.url, timeout_ms=SHORT_TIMEOUT_MS))
        assert decode_error_code(codec, confluent_header(3) + AVRO_BODY) == "REGISTRY_UNAVAILABLE"
    finally:
        listener.close()


def test_a_schema_that_is_not_one_of_our_records_is_unknown_schema_and_asked_for_once() -> None:
    body = b'{"schema": "{\\"type\\": \\"record\\", \\"name\\": \\"other.Thing\\", \\"fields\\": []}"}'
    listener = Listener(reply=b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        codec = Codec(registry=RegistryClient(listener.url, timeout_ms=SHORT_TIMEOUT_MS))
        for _ in range(3):
            assert decode_error_code(codec, confluent_header(4) + AVRO_BODY) == "UNKNOWN_SCHEMA"
        assert listener.connections == 1
    finally:
        listener.close()


def test_the_confluent_framing_needs_a_registry() -> None:
    with pytest.raises(ValueError, match="needs a schema registry"):
        Codec(framing=Framing.CONFLUENT)
    with pytest.raises(ValueError, match="needs STREAMWALLET_SCHEMA_REGISTRY_URL"):
        codec_for(Settings.from_environment({}, avro_framing="confluent"))
    with pytest.raises(ValueError, match="choose one of 'single-object', 'confluent'"):
        codec_for(Settings.from_environment({}, avro_framing="json"))


def test_the_default_settings_write_single_object_encoding() -> None:
    codec = codec_for(Settings.from_environment({}))
    assert codec.encode(DEPOSIT) == CODEC.encode(DEPOSIT)
    assert codec.schema_id(commands.Deposit) is None
