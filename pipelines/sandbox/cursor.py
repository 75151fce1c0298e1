"""Opaque, signed pagination cursors bound to the query they were issued for."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json


class CursorError(ValueError):
    """A cursor that is garbage, tampered with, or reused with other query parameters."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Encodes ``base64url(JSON payload).base64url(HMAC-SHA256)``.

    The payload holds the last sort key and a digest of the binding (path, start_at, end_at)
    so a cursor only resumes the exact query that produced it.

    Args:
        secret: Server-side HMAC key, never sent to clients.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @staticmethod
    def binding(path: str, start_at: str | None, end_at: str | None) -> str:
        """A short digest of the query parameters a cursor is tied to."""
        raw = json.dumps([path, start_at, end_at])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest()[:16])

    def encode(self, key: tuple, binding: str) -> str:
        """A cursor resuming after ``key`` for the query identified by ``binding``."""
        payload = json.dumps({"k": list(key), "b": binding}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._mac(payload)}"

    def decode(self, token: str, binding: str) -> tuple:
        """The sort key inside ``token``.

        Raises:
            CursorError: Malformed, bad MAC, or issued for another query.
        """
        try:
            if not token.isascii():  # compare_digest refuses non-ASCII text with a TypeError
                raise ValueError(token)
            body, mac = token.split(".")
            payload = _unb64(body)
        except (ValueError, binascii.Error):
            raise CursorError("invalid cursor: malformed") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise CursorError("invalid cursor: signature mismatch")
        data = json.loads(payload)
        if data["b"] != binding:
            raise CursorError(
                "invalid cursor: it was issued for other parameters (path, start_at, end_at)"
            )
        return tuple(data["k"])
