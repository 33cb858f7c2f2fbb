"""Run ids: an injective encoding of what triggered a run plus a short hash of its content.

    ds-<readable dataset/version>-<trigger hash 8>-<content hash 8>      (S3 uploads, `dataset push`)
    gh-<readable repo/tag>-<trigger hash 8>-<release.id hash 8>[-r<n>]   (GitHub releases)

The readable part is a lossy slug (`a-b/c` and `a/b-c` both read `a-b-c`) and may be truncated; the
trigger hash is a SHA-256 of the exact, separator-delimited trigger string, so two different triggers
differ there even when their slugs agree. The content hash makes new bytes under the same name a new
run, and the same bytes the same run (the execution name dedupes it). Ids use only [a-zA-Z0-9-] and
stay <= MAX_RUN_ID_LENGTH, so the job name `<run id>-<stack code>-a<attempt>` fits SageMaker's 63
characters. Run ids carry nothing of the stack (the same upload is the same run id in dev and prod);
job names do: SageMaker job names are unique per account and region, forever.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

STACK_CODE_LENGTH = 8  # the stack code in job names: 8 hex characters of the CloudFormation stack id
# job name "<run id>-<stack code>-a<attempt>" <= 63 with attempts up to 10 ("-a10")
MAX_RUN_ID_LENGTH = 63 - 1 - STACK_CODE_LENGTH - len("-a10")
HASH_LENGTH = 8
RETRY_SUFFIX_RESERVE = 4  # "-r<n>" for a release re-published after ImageNotFound (n <= 99)
MANIFEST_NAME = "manifest.json"


def _slug(text: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9]", "-", text)).strip("-") or "x"


def short_hash(text: str, length: int = HASH_LENGTH) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def encode_run_id(kind: str, readable: Iterable[str], exact: Iterable[str], content: str) -> str:
    """`<kind>-<slug...>-<hash(exact)>-<content[:8]>`, truncating only the readable part."""
    exact_text = "\x00".join([kind, *exact])  # NUL never occurs in S3 keys' names or tags: injective
    tail = f"-{short_hash(exact_text)}-{_slug(content)[:HASH_LENGTH]}"
    budget = MAX_RUN_ID_LENGTH - RETRY_SUFFIX_RESERVE - len(kind) - 1 - len(tail)
    body = "-".join(_slug(p) for p in readable)[:budget].rstrip("-") or "x"
    return f"{kind}-{body}{tail}"


def dataset_run_id(name: str, version: str | None, fmt: str, location: str, content_hash: str) -> str:
    """The run id of a dataset upload: `version` None for an unversioned upload (content-named)."""
    readable = [name] if version is None else [name, version]
    return encode_run_id("ds", readable, [name, version or "", fmt, location], content_hash)


def release_run_id(repository: str, tag: str, release_id: int | str | None, retry: int = 1) -> str:
    """The run id of a GitHub release; `retry` >= 2 for a re-publish after the image never appeared."""
    base = encode_run_id("gh", [repository, tag], [repository, tag], short_hash(f"release:{release_id}"))
    return base if retry <= 1 else f"{base}-r{retry}"


def listing_hash(entries: Iterable[tuple[str, int, str]]) -> str:
    """Content hash of a (relative key, size, ETag) listing; manifest.json is left out (its created_at
    changes on every push of the same bytes). Quotes around ETags are ignored. See ListingDigest."""
    return ListingDigest().add(entries).hexdigest()


_MOD = 1 << 512


class ListingDigest:
    """An order-free hash of a listing that can be carried between Lambda invocations in a few bytes.

    Each entry `key\tsize\tetag` is hashed with SHA-512 and the digests are summed mod 2^512 (a multiset
    hash): pages can be added in any order and the state is (count, sum). A 100,000-object prefix is listed
    over several invocations (yoloops_core.uploads) and still gets the one hash the whole listing has. This
    detects changed uploads; it is not meant to resist someone crafting collisions (who could write the
    bucket anyway)."""

    def __init__(self, count: int = 0, total: int = 0, seen: int = 0) -> None:
        self.count, self.total = count, total  # hashed entries (manifest.json left out) and their sum
        self.seen = seen  # every entry added, manifest.json included (the upload's object count)

    def add(self, entries: Iterable[tuple[str, int, str]]) -> ListingDigest:
        for key, size, etag in entries:
            self.seen += 1
            if key.rsplit("/", 1)[-1] == MANIFEST_NAME:
                continue
            line = f"{key}\t{int(size)}\t{str(etag).strip(chr(34))}".encode("utf-8", "surrogatepass")
            self.total = (self.total + int.from_bytes(hashlib.sha512(line).digest(), "big")) % _MOD
            self.count += 1
        return self

    def state(self) -> str:
        return f"{self.count}:{self.total:x}:{self.seen}"

    @classmethod
    def from_state(cls, state: str | None) -> ListingDigest:
        if not state:
            return cls()
        count, total, seen = state.split(":")
        return cls(int(count), int(total, 16), int(seen))

    def hexdigest(self) -> str:
        return hashlib.sha256(f"yoloops-listing-v2:{self.count}:{self.total:x}".encode()).hexdigest()
