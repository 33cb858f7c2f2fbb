"""Where a dataset's files come from. The validator sees only `list_files` and `read_files`.

S3 sources never read images: one paginated listing gives every path, size and ETag. The prefix source
then takes small text files (labels, image lists, the YAML) from the manifest's inline copies when the
listing proves them identical to the objects (S3PrefixSource), and fetches the rest concurrently on the
one client (boto3 clients are thread-safe), starting those reads while the listing is still paging.

Zip datasets are read with ranged GETs, not downloaded: the archive's end records and central directory
(one or two ranges) list every member with its size; label members are then fetched in coalesced ranges
(labels sit next to each other in an archive) and inflated here. Cost is proportional to label bytes,
not to image bytes (a real dataset zip is GBs of images; a Lambda has 512 MB-10 GB of /tmp).
Measured (bench/bench_dataset_validation.py --zip, moto server, 10,000 images): 0.96 s for the zip vs
41.6 s for the same dataset as a prefix read label by label (on a loaded machine); a prefix pushed with
inline texts: 4.8 s, 1 GET, for a 4.7 s bare listing (26.1 s, 9,502 GETs, without inline texts).
Without inline texts (no manifest: `aws s3 sync`, the console) the validator reads a sample of 50 labels
(the job checks all before its first epoch) and label GETs are not prefetched: 1.21x a bare listing,
52 GETs, against 3.37x reading every label (`--modes bare [--full-labels]`, 10,000 images, loaded box).
Training gets the zip as the channel and the container extracts it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from yoloops_core.dataset.manifest import MANIFEST_NAME, md5_hex

# Small text files are the only ones ever read; anything bigger is reported, never downloaded.
MAX_TEXT_BYTES = 64 * 1024 * 1024
TEXT_SUFFIXES = (".txt", ".yaml", ".yml", ".json")
MAX_READ_WORKERS = 32


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the source root, "/"-separated
    size: int
    # What the listing says of the bytes, without reading them: "md5:<hex>" (a single-part S3 ETag, or
    # hashed locally), "etag:<multipart ETag>", "crc32:<hex>-<size>" (zip). "" when unknown. Equal
    # fingerprints mean equal content (the leakage checks compare them).
    fingerprint: str = ""


def etag_fingerprint(etag: str) -> str:
    etag = etag.strip('"')
    if not etag:
        return ""
    return f"etag:{etag}" if "-" in etag else f"md5:{etag}"


class DatasetSource(Protocol):
    description: str

    def list_files(self) -> list[FileEntry]: ...

    def read_files(self, paths: Iterable[str]) -> dict[str, bytes | Exception]: ...

    def key_for(self, path: str) -> str: ...


class DatasetNotFound(LookupError):
    """The dataset location holds nothing (empty prefix, missing zip)."""


def is_text_candidate(path: str, size: int) -> bool:
    return path.lower().endswith(TEXT_SUFFIXES) and size <= MAX_TEXT_BYTES


def looks_like_label(path: str) -> bool:
    """A .txt under a `labels` folder or two folders deep: a label, not a YAML, classes.txt or image list
    (those sit at the dataset root or one folder below it)."""
    if not path.lower().endswith(".txt"):
        return False
    parts = path.split("/")
    return "labels" in parts[:-1] or len(parts) > 2


def _worker_count(s3: Any) -> int:
    # More threads than the client's connection pool only churns connections.
    pool = getattr(getattr(getattr(s3, "meta", None), "config", None), "max_pool_connections", None)
    return max(1, min(MAX_READ_WORKERS, pool or 10))


def _is_missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket")


# ---------------------------------------------------------------- local directory

def _md5_fingerprint(path: Path) -> str:
    """The md5 S3 would give the same bytes as ETag (single part), so local and uploaded copies compare."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ""
    return f"md5:{digest.hexdigest()}"


class LocalDirSource:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.description = str(self.root)

    def list_files(self) -> list[FileEntry]:
        if not self.root.is_dir():
            raise DatasetNotFound(f"{self.root} is not a directory")
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                full = Path(dirpath) / name
                try:
                    size = full.stat().st_size
                except OSError:
                    size = -1  # broken link etc.: reported as unreadable if it matters
                out.append(FileEntry(full.relative_to(self.root).as_posix(), size, _md5_fingerprint(full)))
        return sorted(out, key=lambda e: e.path)

    def read_files(self, paths: Iterable[str]) -> dict[str, bytes | Exception]:
        result: dict[str, bytes | Exception] = {}
        for p in paths:
            try:
                result[p] = (self.root / p).read_bytes()
            except OSError as exc:
                result[p] = exc
        return result

    def key_for(self, path: str) -> str:
        return path


# ---------------------------------------------------------------- S3 prefix

class S3PrefixSource:
    """One paginated listing, then the text files: from the manifest's inline copies where the listing
    proves them identical to the objects, else by concurrent GETs.

    Proof, per file: the listed size equals the manifest entry's size, the listed ETag equals the entry's
    md5, and md5(inline text) equals it too. A single-part upload's ETag is the MD5 of its bytes (SSE-S3
    or none), so the inline text is byte-for-byte the object. Anything else (multipart "-N" ETags,
    SSE-KMS, an object rewritten after the manifest, an older manifest without md5/text) is fetched.
    The manifest is requested before the first listing page so its download overlaps the listing.
    """

    def __init__(self, s3: Any, bucket: str, prefix: str, *, prefetch: bool = True,
                 use_manifest: bool = True, prefetch_labels: bool = True,
                 include: Callable[[str], bool] | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        # Which relative paths belong to the dataset (an unversioned one leaves its version folders out).
        self.include = include
        # (key, size, ETag) of every object listed: exactly what was validated (the run's training snapshot).
        self.objects: list[tuple[str, int, str]] = []
        self.prefetch = prefetch
        # False when the validator reads only a sample of the labels: GET them on demand, not all upfront.
        self.prefetch_labels = prefetch_labels
        self.use_manifest = use_manifest
        self.description = f"s3://{bucket}/{self.prefix}"
        self._pool = ThreadPoolExecutor(max_workers=_worker_count(s3), thread_name_prefix="ds-read")
        self._pending: dict[str, Future[bytes]] = {}
        self._verified: dict[str, bytes] = {}  # inline texts proven equal to the listed objects
        self._inline: dict[str, tuple[int, str, str]] | None = None  # path -> (size, md5, text)
        self.inline_reads = 0  # how many reads the manifest answered (the benchmark prints it)

    def _get(self, path: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=self.prefix + path)["Body"].read()

    def list_files(self) -> list[FileEntry]:
        manifest = self._pool.submit(self._get, MANIFEST_NAME) if self.use_manifest else None
        out = []
        waiting: list[tuple[str, int, str]] = []  # text files listed before the manifest arrived
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(self.prefix):]
                if not rel or rel.endswith("/"):
                    continue  # "folder" marker objects
                if self.include is not None and not self.include(rel):
                    continue  # another dataset's objects under this prefix (an unversioned one's versions)
                entry = FileEntry(rel, int(obj["Size"]), etag_fingerprint(str(obj.get("ETag", ""))))
                out.append(entry)
                self.objects.append((obj["Key"], entry.size, str(obj.get("ETag", "")).strip('"')))
                if is_text_candidate(rel, entry.size):
                    waiting.append((rel, entry.size, str(obj.get("ETag", ""))))
            if manifest is None or manifest.done():
                self._route(waiting, manifest)
                waiting = []
        self._route(waiting, manifest)
        if not out:
            raise DatasetNotFound(f"no objects under {self.description}")
        return out

    def _route(self, listed: list[tuple[str, int, str]], manifest: Future[bytes] | None) -> None:
        """Serve each listed text file from a proven inline copy, or start its GET."""
        inline = self._inline_table(manifest)
        for rel, size, etag in listed:
            if rel == MANIFEST_NAME and manifest is not None and manifest.exception() is None:
                self._pending[rel] = manifest  # the very bytes the inline table came from
                continue
            data = _proven(inline.get(rel), size, etag)
            if data is not None:
                self._verified[rel] = data
            elif self.prefetch and (self.prefetch_labels or not looks_like_label(rel)):
                self._pending[rel] = self._pool.submit(self._get, rel)

    def is_free(self, path: str) -> bool:
        """True when read_files serves the path without a GET (a proven inline manifest text)."""
        return path in self._verified

    def _inline_table(self, manifest: Future[bytes] | None) -> dict[str, tuple[int, str, str]]:
        if self._inline is None:
            self._inline = {}
            if manifest is not None and manifest.exception() is None:
                self._inline = _inline_entries(manifest.result())
        return self._inline

    def read_files(self, paths: Iterable[str]) -> dict[str, bytes | Exception]:
        result: dict[str, bytes | Exception] = {}
        futures: dict[str, Future[bytes]] = {}
        for p in paths:
            if p in self._verified:
                result[p] = self._verified[p]
                self.inline_reads += 1
            else:
                futures[p] = self._pending.pop(p, None) or self._pool.submit(self._get, p)
        for p, fut in futures.items():
            try:
                result[p] = fut.result()
            except Exception as exc:  # reported per file; the caller decides whether it is fatal
                result[p] = exc
        return result

    def close(self) -> None:
        for fut in self._pending.values():
            fut.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def key_for(self, path: str) -> str:
        return self.prefix + path


def _inline_entries(raw: bytes) -> dict[str, tuple[int, str, str]]:
    """path -> (size, md5, text) for the manifest entries that carry all three; anything malformed is
    skipped here (those files are fetched) and reported by the validator's own manifest check."""
    try:
        files = json.loads(raw).get("files")
    except (ValueError, AttributeError):
        return {}
    table: dict[str, tuple[int, str, str]] = {}
    for item in files if isinstance(files, list) else ():
        if not isinstance(item, dict):
            continue
        path, size, md5, text = item.get("path"), item.get("size"), item.get("md5"), item.get("text")
        if (isinstance(path, str) and isinstance(size, int) and isinstance(md5, str)
                and isinstance(text, str)):
            table[path] = (size, md5.lower(), text)
    return table


def _proven(entry: tuple[int, str, str] | None, size: int, etag: str) -> bytes | None:
    """The inline bytes if the listing proves the object holds exactly them, else None."""
    if entry is None:
        return None
    want_size, want_md5, text = entry
    if size != want_size or etag.strip('"').lower() != want_md5:
        return None  # rewritten since the manifest, multipart, or SSE-KMS: read the object itself
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a hand-edited "\ud800"
        return None
    if len(data) != size or md5_hex(data) != want_md5:
        return None  # the manifest's text is not the content it claims
    return data


# ---------------------------------------------------------------- zip archives (local or S3, ranged reads)

class _RangeFile(io.RawIOBase):
    """A seekable read-only file over `read_range(start, end_inclusive)`; enough for zipfile's
    central-directory parsing (it seeks to the end, then reads the directory in one call)."""

    def __init__(self, read_range: Callable[[int, int], bytes], size: int) -> None:
        self._read_range = read_range
        self._size = size
        self._pos = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._read_range(self._pos, self._pos + n - 1)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
# Members whose bytes lie close together are fetched in one ranged GET (labels are usually adjacent).
COALESCE_GAP = 256 * 1024
COALESCE_MAX = 8 * 1024 * 1024


class ZipSource:
    """A zip archive read through ranged reads: the central directory gives every member's path and
    size without downloading the archive; only the text members are then fetched and inflated."""

    def __init__(self, read_range: Callable[[int, int], bytes], size: int, description: str,
                 key_prefix: str = "", workers: int = 8) -> None:
        self._read_range = read_range
        self._size = size
        self.description = description
        self._key_prefix = key_prefix
        self._workers = workers
        self._infos: dict[str, zipfile.ZipInfo] = {}
        self.objects: list[tuple[str, int, str]] = []  # the archive's (key, size, ETag) when read from S3

    @classmethod
    def from_s3(cls, s3: Any, bucket: str, key: str) -> ZipSource:
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                raise DatasetNotFound(f"s3://{bucket}/{key} does not exist") from exc
            raise
        size, etag = int(head["ContentLength"]), str(head.get("ETag", "")).strip('"')

        def read_range(start: int, end: int) -> bytes:
            # IfMatch: every range comes from the archive that was sized (and is the run's snapshot).
            extra = {"IfMatch": f'"{etag}"'} if etag else {}
            return s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}", **extra)["Body"].read()

        source = cls(read_range, size, f"s3://{bucket}/{key}", key_prefix=f"{key}!", workers=_worker_count(s3))
        source.objects = [(key, size, etag)]
        return source

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> ZipSource:
        p = Path(path)
        if not p.is_file():
            raise DatasetNotFound(f"{p} does not exist")

        def read_range(start: int, end: int) -> bytes:
            with p.open("rb") as fh:
                fh.seek(start)
                return fh.read(end - start + 1)

        return cls(read_range, p.stat().st_size, str(p), key_prefix=f"{p.name}!", workers=1)

    def list_files(self) -> list[FileEntry]:
        # Buffer 64 KiB so zipfile's small seeks/reads of the end records become one ranged read.
        with zipfile.ZipFile(io.BufferedReader(_RangeFile(self._read_range, self._size), 64 * 1024)) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
        self._infos = {i.filename: i for i in infos}
        if not infos:
            raise DatasetNotFound(f"{self.description} has no files")
        return [FileEntry(i.filename, i.file_size, f"crc32:{i.CRC:08x}-{i.file_size}") for i in infos]

    def read_files(self, paths: Iterable[str]) -> dict[str, bytes | Exception]:
        result: dict[str, bytes | Exception] = {}
        wanted = []
        for p in paths:
            info = self._infos.get(p)
            if info is None:
                result[p] = FileNotFoundError(p)
            else:
                wanted.append(info)
        wanted.sort(key=lambda i: i.header_offset)
        # Group members into spans; a local header's extra field may differ from the central one,
        # so each span reserves slack past the member's data.
        spans: list[list[zipfile.ZipInfo]] = []
        for info in wanted:
            if spans:
                first, last = spans[-1][0], spans[-1][-1]
                if (info.header_offset - _member_end(last) <= COALESCE_GAP
                        and _member_end(info) - first.header_offset <= COALESCE_MAX):
                    spans[-1].append(info)
                    continue
            spans.append([info])

        def fetch(span: list[zipfile.ZipInfo]) -> dict[str, bytes | Exception]:
            start = span[0].header_offset
            end = min(self._size, _member_end(span[-1])) - 1
            blob = self._read_range(start, end)
            out: dict[str, bytes | Exception] = {}
            for info in span:
                try:
                    out[info.filename] = _extract(blob, info.header_offset - start, info)
                except Exception as exc:  # a corrupt member is reported, not fatal
                    out[info.filename] = exc
            return out

        with ThreadPoolExecutor(max_workers=max(1, self._workers)) as pool:
            for part in pool.map(fetch, spans):
                result.update(part)
        return result

    def key_for(self, path: str) -> str:
        return self._key_prefix + path


def _member_end(info: zipfile.ZipInfo) -> int:
    return info.header_offset + _LOCAL_HEADER.size + len(info.orig_filename.encode()) + 1024 + info.compress_size


def _extract(blob: bytes, offset: int, info: zipfile.ZipInfo) -> bytes:
    fields = _LOCAL_HEADER.unpack_from(blob, offset)
    if fields[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    start = offset + _LOCAL_HEADER.size + fields[9] + fields[10]
    raw = blob[start : start + info.compress_size]
    if len(raw) != info.compress_size:
        raise zipfile.BadZipFile(f"truncated member {info.filename}")
    if info.compress_type == zipfile.ZIP_STORED:
        data = raw
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        data = zlib.decompress(raw, -15)
    else:
        raise zipfile.BadZipFile(f"{info.filename}: unsupported compression {info.compress_type}")
    if zlib.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"{info.filename}: CRC mismatch")
    return data
