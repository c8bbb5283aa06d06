"""SSH public keys: the one validation every stored key passes (:func:`validate_ssh_key`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

from burst.ondemand.errors import ServiceError

_ECDSA = {"ecdsa-sha2-nistp256": b"nistp256", "ecdsa-sha2-nistp384": b"nistp384", "ecdsa-sha2-nistp521": b"nistp521"}
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", *_ECDSA)


def _read_string(blob: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(blob):
        raise ValueError("truncated")
    (n,) = struct.unpack(">I", blob[pos : pos + 4])
    pos += 4
    if n > len(blob) - pos:
        raise ValueError("truncated")
    return blob[pos : pos + n], pos + n


def validate_ssh_key(text: str) -> tuple[str, str]:
    """Return ``(normalised key, SHA256 fingerprint)`` or raise :class:`ServiceError`.

    Accepted: ``ssh-ed25519``, ``ecdsa-sha2-nistp256/384/521`` and ``ssh-rsa`` of at least 2048
    bits. The base64 body must decode, and the blob inside must start with the same key type.
    The comment is dropped (it is free text and not needed to log in).
    """
    parts = text.strip().split()
    if len(text) > 16384 or len(parts) < 2:
        raise ServiceError("That is not an SSH public key. Paste the one line from your `~/.ssh/id_ed25519.pub`.")
    kind, body = parts[0], parts[1]
    if kind not in KEY_TYPES:
        raise ServiceError(f"Key type must be one of {', '.join(KEY_TYPES)}.")
    try:
        blob = base64.b64decode(body, validate=True)
        inner, pos = _read_string(blob, 0)
        if inner.decode("ascii", "replace") != kind:
            raise ValueError("key type inside the key does not match")
        if kind == "ssh-ed25519":
            pub, pos = _read_string(blob, pos)
            if len(pub) != 32:
                raise ValueError("bad ed25519 key")
        elif kind == "ssh-rsa":
            e, pos = _read_string(blob, pos)
            n, pos = _read_string(blob, pos)
            bits = int.from_bytes(n, "big").bit_length()
            if not e or bits < 2048:
                raise ServiceError(f"RSA keys must have at least 2048 bits (this one has {bits}).")
        else:
            curve, pos = _read_string(blob, pos)
            if curve != _ECDSA[kind]:
                raise ValueError("curve does not match the key type")
            point, pos = _read_string(blob, pos)
            if not point:
                raise ValueError("empty point")
        if pos != len(blob):
            raise ValueError("trailing bytes")
    except ServiceError:
        raise
    except (ValueError, binascii.Error, struct.error):
        raise ServiceError("That SSH public key does not decode. Paste the whole line, unchanged.") from None
    fp = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"{kind} {body}", fp
