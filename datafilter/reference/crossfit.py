"""The cross-fitting scheme: a document's fold is a pure function of its text.

``text_hash`` is the first 8 bytes of blake2b(UTF-8 text), read as an unsigned little-endian
integer. A document of fold ``text_hash % k`` is only eligible for model ``fold``'s training
sample, and it is scored by model ``(fold + 1) % k``, which could never have trained on it
(exact duplicates share a hash, hence a fold). With k = 1 the single model scores everything:
that is not cross-fitted.
"""

from __future__ import annotations

import hashlib

HASH_SCHEME = "blake2b-64(utf8 text), little-endian; fold = hash % k; scorer = (fold + 1) % k"


def text_hash(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def fold_of(text: str, k: int) -> int:
    """The fold a document belongs to (the only model that may train on it)."""
    return text_hash(text) % k


def scoring_fold(text: str, k: int) -> int:
    """The fold model that scores this document: never the one that could have trained on it."""
    return (fold_of(text, k) + 1) % k


def sample_key(text: str, seed: int) -> float:
    """A uniform number in [0, 1), independent of the fold hash, that orders the sample."""
    digest = hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"),
        digest_size=8,
        salt=seed.to_bytes(8, "little", signed=True),
        person=b"df-sample",
    ).digest()
    return int.from_bytes(digest, "little") / 2.0**64
