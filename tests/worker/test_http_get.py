"""The `http_get` tool's guards, calling the tool function directly against servers on 127.0.0.1.

- Size: the limit bounds the bytes read from the socket and the decoded output; a 50 MB
  gzip/deflate bomb inflates to about the limit and allocates little more; unknown codings are refused.
- Addresses: every IPv6 form that embeds an IPv4 address is judged by that IPv4 address; private,
  reserved, link-local, loopback, multicast and unspecified addresses are refused.
- DNS rebinding: the host is resolved once and the connection goes to the address that was checked,
  with the original Host header (and, over TLS, the original name for SNI and the certificate).
"""

from __future__ import annotations

import datetime
import socket
import ssl
import struct
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.exceptions import ToolFailed

from runyard.config import get_settings
from runyard.worker.tools import net
from runyard.worker.tools.builtins import http_get
from runyard.worker.tools.context import ToolCallContext, current_tool_call

LIMIT = 256 * 1024
BOMB_SIZE = 50 * 1024 * 1024


def _deflate_bomb() -> tuple[bytes, int]:
    """A raw deflate stream of 50 MB of zeros (about 50 KB) and its Adler-32."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [deflate.compress(zeros) for _ in range(BOMB_SIZE // len(zeros))]
    adler = 1
    for _ in range(BOMB_SIZE // len(zeros)):
        adler = zlib.adler32(zeros, adler)
    return b"".join(parts) + deflate.flush(), adler


def _gzip_member(data: bytes) -> bytes:
    deflate = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return deflate.compress(data) + deflate.flush()


@dataclass
class Route:
    body: bytes | Callable[[], Iterator[bytes]]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class Server(ThreadingHTTPServer):
    """Serves `routes` (path -> Route) and records every request it gets."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.seen: list[Seen] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server: Server = self.server  # type: ignore[assignment]
                server.seen.append(Seen(self.path, dict(self.headers.items())))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if isinstance(route.body, bytes):
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                pieces = iter([route.body]) if isinstance(route.body, bytes) else route.body()
                try:
                    for piece in pieces:
                        view = memoryview(piece)
                        for start in range(0, len(view), 16 * 1024):
                            self.wfile.write(view[start:start + 16 * 1024])
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> Server:
        srv = Server(routes, tls)
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the tool reach 127.0.0.1, with a known size limit."""
    settings = get_settings()
    monkeypatch.setattr(settings, "http_get_allow_private", True)
    monkeypatch.setattr(settings, "http_get_max_bytes", LIMIT)
    monkeypatch.setattr(settings, "http_get_timeout", 5.0)


@pytest.fixture
def no_real_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names under `.test` are answered only by the tool's (patched) resolver: any other
    lookup of them, say by the HTTP client connecting by name, is recorded and fails."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".test"):
            lookups.append(name)
            raise socket.gaierror(socket.EAI_NONAME, "no DNS in this test")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


# --- Size ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    raw, adler = _deflate_bomb()
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    crc = 0
    zeros = bytes(1024 * 1024)
    for _ in range(BOMB_SIZE // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    return {
        "gzip": gzip_header + raw + struct.pack("<II", crc, BOMB_SIZE & 0xFFFFFFFF),
        "deflate": b"\x78\xda" + raw + struct.pack(">I", adler),  # zlib-wrapped, as HTTP means it
        "raw-deflate": raw,  # what some servers send as "deflate"
    }


@pytest.mark.parametrize("kind", ["gzip", "deflate", "raw-deflate"])
async def test_a_compression_bomb_inflates_to_the_limit_only(
    kind: str, bombs: dict[str, bytes], local: None, serve: Callable[..., Server]
) -> None:
    body = bombs[kind]
    assert len(body) < LIMIT < BOMB_SIZE  # only the decoded-size limit can stop it
    srv = serve({"/bomb": Route(body, {"Content-Encoding": kind.removeprefix("raw-")})})
    tracemalloc.start()
    try:
        result = await http_get(f"{srv.url}/bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == "HTTP 200 (truncated)\n" + "\0" * LIMIT
    # Inflating a whole chunk at once would allocate the 50 MB.
    assert peak < 12 * LIMIT, f"peak {peak / 1e6:.1f} MB"


def _empty_blocks_then_hello() -> Iterator[bytes]:
    """A valid gzip body: 2 MB of empty deflate blocks (no output at all), then "hello"."""
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    for _ in range(8):
        yield b"\x00\x00\x00\xff\xff" * (256 * 1024 // 5)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    yield deflate.compress(b"hello") + deflate.flush() + struct.pack("<II", zlib.crc32(b"hello"), 5)


async def test_the_limit_counts_bytes_read_from_the_socket(local: None, serve: Callable[..., Server]) -> None:
    srv = serve({
        "/big": Route(b"x" * (5 * 1024 * 1024), {"Content-Type": "text/plain"}),
        "/blocks": Route(_empty_blocks_then_hello, {"Content-Encoding": "gzip"}),
    })
    assert await http_get(f"{srv.url}/big") == "HTTP 200 (truncated)\n" + "x" * LIMIT
    # Compressed bytes count even when they decode to nothing: reading stops after LIMIT of them.
    assert await http_get(f"{srv.url}/blocks") == "HTTP 200 (truncated)\n"


async def test_normal_bodies_are_decoded(local: None, serve: Callable[..., Server]) -> None:
    text = "hello wörld " * 100
    data = text.encode()
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    plain = {"Content-Type": "text/plain; charset=utf-8"}
    srv = serve({
        "/identity": Route(data, plain),
        "/gzip": Route(_gzip_member(data), {**plain, "Content-Encoding": "gzip"}),
        # A gzip body may be several members back to back.
        "/gzip-members": Route(_gzip_member(data[:7]) + _gzip_member(data[7:]), {**plain, "Content-Encoding": "gzip"}),
        "/deflate": Route(zlib.compress(data), {**plain, "Content-Encoding": "deflate"}),
        "/raw-deflate": Route(deflate.compress(data) + deflate.flush(), {**plain, "Content-Encoding": "deflate"}),
        "/empty": Route(b"", {"Content-Encoding": "gzip"}),
    })
    token = current_tool_call.set(ToolCallContext(run_id="run_1", tool_call_id="call_7"))
    try:
        for path in ("/identity", "/gzip", "/gzip-members", "/deflate", "/raw-deflate"):
            assert await http_get(f"{srv.url}{path}") == f"HTTP 200\n{text}", path
        assert await http_get(f"{srv.url}/empty") == "HTTP 200\n"
    finally:
        current_tool_call.reset(token)
    assert {s.headers["Accept-Encoding"] for s in srv.seen} == {"gzip, deflate"}
    assert {s.headers["Idempotency-Key"] for s in srv.seen} == {"run_1:call_7"}


async def test_unknown_content_encodings_are_refused(local: None, serve: Callable[..., Server]) -> None:
    srv = serve({
        "/br": Route(b"\x1b\x03\x00\xf8\xa5\x8a\x10\x80\x02", {"Content-Encoding": "br"}),
        "/twice": Route(_gzip_member(_gzip_member(b"hi")), {"Content-Encoding": "gzip, gzip"}),
        "/corrupt": Route(b"\x1f\x8b\x08\x00garbage-garbage", {"Content-Encoding": "gzip"}),
    })
    for path, message in (("/br", "Content-Encoding"), ("/twice", "Content-Encoding"), ("/corrupt", "decode")):
        with pytest.raises(ToolFailed, match=message):
            await http_get(f"{srv.url}{path}")


def test_the_decoder_never_holds_more_than_the_limit(bombs: dict[str, bytes]) -> None:
    raw = bombs["raw-deflate"]
    decoder = net.BoundedDecoder("deflate", 1000)
    for start in range(0, len(raw), 7):
        decoder.feed(raw[start:start + 7])
        assert len(decoder.output) <= 1001
        if decoder.done:
            break
    assert decoder.truncated and decoder.done and len(decoder.output) == 1001


# --- Addresses ----------------------------------------------------------------------------------

REFUSED = [
    # IPv4
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
    "100.64.0.1", "192.0.2.1", "198.18.0.1", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    # IPv6
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "ff0e::1",
    "2001:db8::1", "100::1", "4000::1",
    # IPv4-mapped, IPv4-translated, IPv4-compatible
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
    "::ffff:0:127.0.0.1", "::ffff:0:a9fe:a9fe", "::127.0.0.1", "::10.0.0.1", "::169.254.169.254",
    # NAT64: the well-known prefix embeds a private address; the local-use prefix is refused whole
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::7f00:1", "64:ff9b:1::808:808",
    # 6to4
    "2002:7f00:1::1", "2002:a00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101::1",
    # Teredo: server 8.8.8.8, client 127.0.0.1 (stored inverted); server 10.0.0.1, client 8.8.8.8
    "2001:0:808:808::80ff:fffe", "2001:0:a00:1::f7f7:f7f7",
]
ALLOWED = [
    "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2001:4860:4860::8888",
    # Forms embedding a public IPv4 address are judged by it.
    "64:ff9b::808:808", "::ffff:8.8.8.8", "::ffff:0:808:808", "::8.8.8.8", "2002:808:808::1",
    "2001:0:808:808::f7f7:f7f7",
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not net.is_public_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert net.is_public_address(address)


@pytest.mark.parametrize(("address", "embedded"), [
    ("::ffff:1.2.3.4", ["1.2.3.4"]), ("::ffff:0:1.2.3.4", ["1.2.3.4"]), ("::1.2.3.4", ["1.2.3.4"]),
    ("64:ff9b::102:304", ["1.2.3.4"]), ("2002:102:304:5::6", ["1.2.3.4"]),
    ("2001:0:102:304::fefd:fcfb", ["1.2.3.4", "1.2.3.4"]), ("2606:4700:4700::1111", None),
])
def test_embedded_ipv4_addresses_are_found(address: str, embedded: list[str] | None) -> None:
    found = net.embedded_ipv4(net.IPv6Address(address))
    assert (None if found is None else [str(a) for a in found]) == embedded


async def test_a_host_with_any_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, no_real_dns: list[str], serve: Callable[..., Server]
) -> None:
    srv = serve({"/": Route(b"secret")})
    monkeypatch.setattr(get_settings(), "http_get_allow_private", False)
    monkeypatch.setattr(net, "resolve", lambda host: ["8.8.8.8", "::ffff:127.0.0.1"])
    with pytest.raises(ToolFailed, match=r"private .*::ffff:127\.0\.0\.1"):
        await http_get(f"http://mixed.test:{srv.port}/")
    for url in (f"http://[::ffff:127.0.0.1]:{srv.port}/", f"http://[::ffff:0:7f00:1]:{srv.port}/"):
        monkeypatch.setattr(net, "resolve", lambda host: [host])
        with pytest.raises(ToolFailed, match="private"):
            await http_get(url)
    assert srv.seen == [] and no_real_dns == []


# --- DNS rebinding ------------------------------------------------------------------------------


async def test_the_connection_goes_to_the_checked_address(
    monkeypatch: pytest.MonkeyPatch, local: None, no_real_dns: list[str], serve: Callable[..., Server]
) -> None:
    srv = serve({"/page": Route(b"pinned")})
    resolutions: list[str] = []

    def rebinding_resolver(host: str) -> list[str]:
        # First answer: the server. Any later one: an address with nothing listening.
        resolutions.append(host)
        return ["127.0.0.1"] if len(resolutions) == 1 else ["127.0.0.2"]

    monkeypatch.setattr(net, "resolve", rebinding_resolver)
    assert await http_get(f"http://rebind.test:{srv.port}/page") == "HTTP 200\npinned"
    assert resolutions == ["rebind.test"] and no_real_dns == []
    [seen] = srv.seen
    assert seen.path == "/page" and seen.headers["Host"] == f"rebind.test:{srv.port}"


async def test_the_next_address_is_tried_when_one_refuses_connections(
    monkeypatch: pytest.MonkeyPatch, local: None, no_real_dns: list[str], serve: Callable[..., Server]
) -> None:
    srv = serve({"/page": Route(b"second")})
    monkeypatch.setattr(net, "resolve", lambda host: ["127.0.0.2", "127.0.0.1"])
    assert await http_get(f"http://two.test:{srv.port}/page") == "HTTP 200\nsecond"
    assert [s.headers["Host"] for s in srv.seen] == [f"two.test:{srv.port}"] and no_real_dns == []


def _tls_files(tmp: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a certificate for `name` (DNS only, no IP address) that it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key: Any, issuer: str, signer: Any, *, ca: bool) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = cert("test CA", ca_key, "test CA", ca_key, ca=True)
    leaf = cert(name, key, "test CA", ca_key, ca=False)
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


async def test_tls_uses_the_original_name_for_sni_and_the_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, local: None, no_real_dns: list[str],
    serve: Callable[..., Server]
) -> None:
    ca, cert, key = _tls_files(tmp_path, "secure.test")
    sni: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: sni.append(name)
    srv = serve({"/page": Route(b"over tls")}, tls=context)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # httpx trusts the test CA
    monkeypatch.setattr(net, "resolve", lambda host: ["127.0.0.1"])
    # The certificate names secure.test only: verifying it against 127.0.0.1 would fail.
    assert await http_get(f"https://secure.test:{srv.port}/page") == "HTTP 200\nover tls"
    assert sni == ["secure.test"] and no_real_dns == []
    assert [s.headers["Host"] for s in srv.seen] == [f"secure.test:{srv.port}"]
