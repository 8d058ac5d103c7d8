"""A real S3-protocol server for tests: moto's server on 127.0.0.1 (a free port), with a bucket,
the `AWS_*` environment a client needs to reach it, and a listing read over plain HTTP."""

from __future__ import annotations

import logging
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from moto.server import ThreadedMotoServer

__all__ = ["S3Server", "s3_server"]

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        """What obstore (or any AWS client) reads to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def url(self, prefix: str) -> str:
        """A `RUNYARD_FILES` value for this bucket."""
        return f"s3://{self.bucket}/{prefix}"

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix` (moto answers unsigned requests)."""
        out: list[str] = []
        token: str | None = None
        for _ in range(100):  # bounded: 100 pages of 1000 keys
            params = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
            r = httpx.get(f"{self.endpoint}/{self.bucket}", params=params, timeout=10)
            r.raise_for_status()
            root = ET.fromstring(r.content)
            out += [c.findtext(f"{_NS}Key") or "" for c in root.iter(f"{_NS}Contents")]
            token = root.findtext(f"{_NS}NextContinuationToken")
            if not token:
                return out
        raise AssertionError("bucket listing did not end")


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server in a thread on 127.0.0.1 with a fresh bucket, stopped afterwards."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bucket = f"runyard-{secrets.token_hex(4)}"
        httpx.put(f"{endpoint}/{bucket}", timeout=10).raise_for_status()
        yield S3Server(endpoint, bucket)
    finally:
        server.stop()
