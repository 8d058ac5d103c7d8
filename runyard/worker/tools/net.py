"""Network guards of the `http_get` tool: which addresses it may reach, one DNS resolution, and
content decoding whose output never exceeds the size limit (a compression bomb stays small)."""

from __future__ import annotations

import ipaddress
import socket
import zlib
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any
from urllib.parse import urlsplit

from pydantic_ai.exceptions import ToolFailed

from ...store.errors import InvalidInput

__all__ = [
    "SUPPORTED_ENCODINGS",
    "BoundedDecoder",
    "check_url",
    "embedded_ipv4",
    "is_public_address",
    "public_addresses",
    "resolve",
]

IPAddress = IPv4Address | IPv6Address

# IANA special-purpose blocks that are not globally reachable, so the verdict does not depend on
# the Python version's `is_global` tables (3.11 still calls 64:ff9b:1::/48 and 224.0.0.0/4 global).
_V4_NOT_GLOBAL = [
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]
_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_V6_NOT_GLOBAL = [
    IPv6Network(n)
    for n in (
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "3fff::/20",
    )
]
_NAT64 = IPv6Network("64:ff9b::/96")
"""The well-known NAT64 prefix: the IPv4 address is the last 32 bits (RFC 6052). The local-use
prefix 64:ff9b:1::/48 (RFC 8215) places it where its operator chose, so it is refused whole."""


def embedded_ipv4(address: IPv6Address) -> list[IPv4Address] | None:
    """The IPv4 addresses an IPv6 address carries (None if it is not an IPv4-embedding form)."""
    value = int(address)
    if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return [address.ipv4_mapped]
    if value >> 32 in (0, 0xFFFF_0000) or address in _NAT64:  # ::a.b.c.d, ::ffff:0:a.b.c.d, 64:ff9b::a.b.c.d
        return [IPv4Address(value & 0xFFFF_FFFF)]
    if address.sixtofour is not None:  # 2002:AABB:CCDD::/48
        return [address.sixtofour]
    if address.teredo is not None:  # 2001:0:<server>:<flags>:<port>:<~client>
        return list(address.teredo)
    return None


def _is_public_v4(address: IPv4Address) -> bool:
    return (
        not (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
            or any(address in net for net in _V4_NOT_GLOBAL)
        )
        and address.is_global
    )


def is_public_address(address: str | IPAddress) -> bool:
    """True if `address` is globally reachable unicast; an IPv6 form that embeds IPv4 addresses
    (mapped, translated, compatible, NAT64, 6to4, Teredo) is judged by those IPv4 addresses."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address)
    if isinstance(address, IPv4Address):
        return _is_public_v4(address)
    address = IPv6Address(int(address))  # drop a %scope
    embedded = embedded_ipv4(address)
    if embedded is not None:
        return all(_is_public_v4(v4) for v4 in embedded)
    return (
        address in _V6_GLOBAL_UNICAST
        and not (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_site_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
            or any(address in net for net in _V6_NOT_GLOBAL)
        )
        and address.is_global
    )


def resolve(host: str) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order, without duplicates (blocking)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ToolFailed(f"cannot resolve {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def public_addresses(host: str, flag: str) -> list[str]:
    """The addresses `host` resolves to (blocking); `ValueError` if it does not resolve, or to a
    private or reserved address (the message names `flag`, the setting that allows those)."""
    try:
        addresses = resolve(host)
    except ToolFailed as exc:
        raise ValueError(exc.message) from None
    if not addresses:
        raise ValueError(f"cannot resolve {host!r}: no addresses")
    for address in addresses:
        if not is_public_address(address):
            raise ValueError(
                f"refused: {host} resolves to a private or reserved address ({address}); "
                f"the operator allows those with {flag}=true"
            )
    return addresses


MAX_URL = 2048


def check_url(url: Any, field: str, *, allow_private: bool, flag: str) -> str:
    """An absolute http(s) URL without credentials whose host resolves only to public addresses
    (unless `allow_private`), or `InvalidInput` naming `field`. Resolves the name: blocking."""
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise InvalidInput(f"url must be a string of at most {MAX_URL} characters", field=field)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise InvalidInput(f"not a valid URL: {exc}", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c <= " " or c == "\x7f" for c in url):
        raise InvalidInput("url must be an absolute http:// or https:// URL", field=field)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("no credentials in the URL: send them in headers, which are never echoed", field=field)
    if not allow_private:
        try:
            public_addresses(parts.hostname, flag)
        except ValueError as exc:
            raise InvalidInput(str(exc), field=field) from None
    return url


_GZIP, _DEFLATE = "gzip", "deflate"
SUPPORTED_ENCODINGS = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": _DEFLATE}


class BoundedDecoder:
    """Undoes a response's `Content-Encoding` incrementally into `output`, which never grows past
    `limit` + 1 bytes (the extra byte tells a truncated body): each inflate call is capped with
    `max_length`, and input it could not consume yet stays behind, never inflated."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in SUPPORTED_ENCODINGS):
            raise ToolFailed(f"unsupported Content-Encoding {content_encoding!r} (gzip and deflate are)")
        self.coding = SUPPORTED_ENCODINGS[codings[0]] if codings else None
        self.limit = limit
        self.output = bytearray()
        self.done = False
        """Output is full, or the compressed stream ended: later input is ignored."""
        self._inflater: zlib._Decompress | None = None
        self._members = 0
        self._pending = b""

    @property
    def truncated(self) -> bool:
        return len(self.output) > self.limit

    def feed(self, data: bytes) -> None:
        if self.coding is None:
            self.output += data[: self.limit + 1 - len(self.output)]
            self.done = self.truncated
            return
        data, self._pending = self._pending + data, b""
        while data and not self.done:
            if self._inflater is None:
                if len(data) < 2:  # a stream's first two bytes tell its format
                    self._pending = data
                    return
                wbits = self._wbits(data[:2])
                if wbits is None:  # bytes after the end of the stream: ignored, as browsers do
                    self.done = True
                    return
                self._inflater = zlib.decompressobj(wbits)
                self._members += 1
            try:
                self.output += self._inflater.decompress(data, self.limit + 1 - len(self.output))
            except zlib.error as exc:
                raise ToolFailed(f"cannot decode the {self.coding} body: {exc}") from None
            if self._inflater.eof:
                data, self._inflater = self._inflater.unused_data, None
            else:
                data = self._inflater.unconsumed_tail  # not empty only when output reached the cap
            self.done = self.truncated

    def _wbits(self, head: bytes) -> int | None:
        if self.coding == _GZIP:
            # A gzip body may be several members back to back; anything else after one is junk.
            return 16 + zlib.MAX_WBITS if self._members == 0 or head == b"\x1f\x8b" else None
        if self._members:
            return None
        # HTTP "deflate" is meant to be zlib-wrapped, but some servers send raw deflate.
        is_zlib = head[0] & 0x0F == 8 and int.from_bytes(head, "big") % 31 == 0
        return zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS
