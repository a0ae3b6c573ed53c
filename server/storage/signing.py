"""Presigned URLs for the local store: HMAC-SHA256 over method, key, expiry and content type.

A URL looks like ``{base}/objects/{key}?method=PUT&expires=1767225600&sig=...``. The signature binds
the HTTP method, the exact key, the expiry instant, for uploads the ``Content-Type`` header the
client must send, and for downloads the file name served in ``Content-Disposition`` (``filename=``); changing any of them, or presenting the URL after ``expires``, is refused. Like an
S3 presigned URL it may be used again until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from server.errors import Forbidden
from server.storage.keys import DOWNLOAD_FILENAME, validate_filename, validate_key

SIGNED_METHODS = ("GET", "PUT")
_VERSION = b"s3-object-url/v1"
_DERIVE_LABEL = b"s3/object-urls/v1"
_EXPIRES = re.compile(r"[0-9]{1,12}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,255}")


@dataclass(frozen=True)
class SignedUrl:
    url: str
    expires: int
    """Unix seconds after which the URL is refused."""


class UrlSigner:
    """Signs and verifies local presigned URLs with one secret key."""

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("the URL signing secret must be at least 32 bytes")
        self._secret = secret
        self._clock = clock

    @classmethod
    def from_master_secret(cls, secret: str, *, clock: Callable[[], float] = time.time) -> UrlSigner:
        """Derive the signing key from a service secret, so that secret is never used twice as-is."""
        key = hmac.new(secret.encode(), _DERIVE_LABEL, hashlib.sha256).digest()
        return cls(key, clock=clock)

    def now(self) -> float:
        return self._clock()

    def _signature(self, method: str, key: str, expires: int, content_type: str, filename: str = "") -> str:
        parts = [_VERSION, method.encode(), key.encode(), str(expires).encode(), content_type.encode()]
        if filename:  # appended only when present, so URLs signed without one keep their signature
            parts.append(b"filename=" + filename.encode())
        message = b"\n".join(parts)
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(
        self,
        base_url: str,
        *,
        method: str,
        key: str,
        expires_s: int,
        content_type: str | None = None,
        filename: str | None = None,
    ) -> SignedUrl:
        """A URL under ``{base_url}/objects/`` valid for ``expires_s`` seconds from now; a GET URL
        with ``filename`` is served with that name in ``Content-Disposition``."""
        if method not in SIGNED_METHODS:
            raise ValueError(f"method must be one of {SIGNED_METHODS}, got {method!r}")
        validate_key(key)
        if method == "PUT":
            if content_type is None or _HEADER_VALUE.fullmatch(content_type) is None:
                raise ValueError(f"a PUT URL needs a printable content type, got {content_type!r}")
            if filename is not None:
                raise ValueError("only GET URLs carry a download file name")
        elif content_type is not None:
            raise ValueError("only PUT URLs bind a content type")
        if filename is not None:
            validate_filename(filename)
        expires = math.ceil(self._clock()) + expires_s
        sig = self._signature(method, key, expires, content_type or "", filename or "")
        fields = {"method": method, "expires": str(expires), **({"filename": filename} if filename else {}), "sig": sig}
        query = urlencode(fields)
        # Keys are [A-Za-z0-9._/-] already; quoting keeps that true should the grammar ever widen.
        return SignedUrl(url=f"{base_url.rstrip('/')}/objects/{quote(key, safe='/')}?{query}", expires=expires)

    def verify(
        self,
        *,
        method: str,
        key: str,
        query: Mapping[str, str],
        content_type: str | None = None,
    ) -> None:
        """Raise ``Forbidden`` unless ``query`` is a live signature for this method, key and type.

        ``method`` is the HTTP method of the request (HEAD counts as GET); ``content_type`` is the
        request's ``Content-Type`` header (only PUT binds it).
        """
        effective = "GET" if method == "HEAD" else method
        claimed = query.get("method", "")
        expires_text = query.get("expires", "")
        sig = query.get("sig", "")
        if effective not in SIGNED_METHODS or claimed != effective:
            raise Forbidden("this URL is not valid for this method")
        if _EXPIRES.fullmatch(expires_text) is None or not sig:
            raise Forbidden("the URL is missing a valid signature")
        try:
            validate_key(key)
        except ValueError as e:
            raise Forbidden("the URL is not valid for this object") from e
        bound_type = (content_type or "") if effective == "PUT" else ""
        filename = query.get("filename", "")
        if filename and (effective != "GET" or DOWNLOAD_FILENAME.fullmatch(filename) is None):
            raise Forbidden("the URL's file name is not valid")
        expected = self._signature(effective, key, int(expires_text), bound_type, filename)
        # Constant-time: the comparison must not reveal how much of a guessed signature is right.
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
            raise Forbidden("the URL signature does not match this request")
        if self._clock() > int(expires_text):
            raise Forbidden("the URL has expired")
