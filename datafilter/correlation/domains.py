"""A document's domain: the value of a column, or the registered domain of a URL column.

The registered domain ("news.bbc.co.uk" -> "bbc.co.uk") comes from ``tldextract`` with its
bundled Public Suffix List snapshot (ICANN suffixes only, no network). Hosts are read from URLs
with one RE2 pattern, by DuckDB in queries and by Arrow in the select workers, so both agree.
Hosts without a public suffix (IP addresses, ``localhost``) are their own domain; rows without
a parsable host get the null group.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from datafilter.aggregate import NULL_GROUP
from datafilter.errors import ConfigError, MissingDependencyError

# Optional scheme, optional user info, then the host (no port, path, query or fragment).
HOST_PATTERN = r"^\s*(?:[A-Za-z][A-Za-z0-9+.\-]*://)?(?:[^/?#@\s]*@)?(?P<host>[^/?#:@\s\[\]]+)"


@dataclass(frozen=True)
class DomainSpec:
    """Where a row's domain comes from: ``kind="column"`` (the value) or ``"url"``."""

    column: str
    kind: Literal["column", "url"] = "column"

    @classmethod
    def from_args(cls, domain_column: str | None, url_column: str | None) -> DomainSpec:
        if bool(domain_column) == bool(url_column):
            raise ConfigError("give exactly one of a domain column and a URL column")
        if domain_column:
            return cls(domain_column, "column")
        return cls(str(url_column), "url")

    def describe(self) -> dict[str, str]:
        return {"column": self.column, "kind": self.kind}


@lru_cache(maxsize=1)
def _extractor():
    try:
        import tldextract
    except ImportError:
        raise MissingDependencyError(
            "domains from URLs need tldextract: pip install 'datafilter[corr]'"
        ) from None
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@lru_cache(maxsize=1 << 20)
def registered_domain(host: str | None) -> str:
    """``bbc.co.uk`` for ``News.BBC.co.uk.``; the host itself when it has no public suffix."""
    if host is None:
        return NULL_GROUP
    host = host.strip().lower().rstrip(".")
    if not host:
        return NULL_GROUP
    parts = _extractor()(host)
    if parts.domain and parts.suffix:
        return f"{parts.domain}.{parts.suffix}"
    return host


def hosts_of(urls: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The raw host of each URL (null where there is none), with Arrow's RE2."""
    urls = pc.cast(urls, pa.string())
    if isinstance(urls, pa.ChunkedArray):
        urls = urls.combine_chunks()
    return pc.struct_field(pc.extract_regex(urls, HOST_PATTERN), [0])


def domains_of(values: pa.Array | pa.ChunkedArray, spec: DomainSpec) -> list[str]:
    """Each row's domain as a string (the null group for missing values)."""
    if spec.kind == "column":
        return [NULL_GROUP if v is None else v for v in pc.cast(values, pa.string()).to_pylist()]
    return [registered_domain(h) for h in hosts_of(values).to_pylist()]
