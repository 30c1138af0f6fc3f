"""Patient pseudonyms: HMAC-SHA-256 keyed by the app's secret, so the clear id never leaves the edge."""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

from streamapp.settings import get_settings

PSEUDONYM_PREFIX = "pt-"
DIGEST_CHARS = 48  # 192 bits of the HMAC: collision-free in practice, fits the 64-character columns
_PSEUDONYM = re.compile(rf"{re.escape(PSEUDONYM_PREFIX)}[0-9a-f]{{{DIGEST_CHARS}}}")


@lru_cache(maxsize=1)
def _secret() -> bytes:
    return get_settings().pseudonym_secret()


def pseudonymise(patient_id: str) -> str:
    """The stable pseudonym of a clear patient id (same key, same pseudonym; no key, no way back)."""
    return pseudonym_under(_secret(), patient_id)


def pseudonym_under(secret: bytes, patient_id: str) -> str:
    """The pseudonym `patient_id` gets under the key `secret` (the worker's is the configured one)."""
    digest = hmac.new(secret, patient_id.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:DIGEST_CHARS]


def is_pseudonym(value: str) -> bool:
    """Whether `value` has the shape of a pseudonym (used to accept already-pseudonymised records)."""
    return _PSEUDONYM.fullmatch(value) is not None


def forget_secret() -> None:
    """Drop the cached key (tests that change `STREAMAPP_PSEUDONYM_KEY`)."""
    _secret.cache_clear()
