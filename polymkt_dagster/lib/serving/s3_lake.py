"""The lake in S3: a verified mirror, a pull for a cloud bootstrap, and DuckDB httpfs access.

Keys follow docs/architecture.md §2 because the local lake already has that layout: a local file
``<lake>/raw/polymarket/order_filled/year=2024/month=03/day=01/part-0.parquet`` becomes
``s3://<bucket>/<prefix>/raw/polymarket/order_filled/year=2024/month=03/day=01/part-0.parquet``.

Every upload is verified: the object's size, its ETag against the file's MD5 (single-part
uploads), and the SHA-256 the store computed (``ChecksumSHA256``) and that we keep in the
object's metadata. A re-run compares sizes and MD5s with the bucket listing and uploads only
what changed; objects whose file is gone locally (a partition rewritten into buckets, an
old rejects file) are deleted so readers of the bucket never see rows twice. Hidden and
temporary files (names starting with ".") are never uploaded. The client is any boto3 S3
client (dagster-aws ``S3Resource.get_client()`` in Dagster).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb

from polymkt_dagster.lib.core.http import redact_text
from polymkt_dagster.lib.core.lake import write_atomically
from polymkt_dagster.lib.ingest.sync_state import STATE_DIR

Progress = Callable[[str], None]
MULTIPART_ABOVE = 512 * 2**20
MANIFEST = f"{STATE_DIR}/.s3_manifest.json"
MIRRORED_TOP = ("raw", "analytics", STATE_DIR)


class S3LakeError(RuntimeError):
    """An S3 operation failed or an upload did not verify; the message holds no secret."""


@dataclass
class MirrorReport:
    files: int = 0
    uploaded: list[str] = field(default_factory=list)
    skipped: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    verified: int = 0
    elapsed_s: float = 0.0


@dataclass
class PullReport:
    objects: int = 0
    downloaded: list[str] = field(default_factory=list)
    skipped: int = 0
    bytes_downloaded: int = 0
    verified: int = 0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Digest:
    size: int
    md5: str
    sha256: str

    @property
    def sha256_b64(self) -> str:
        return base64.b64encode(bytes.fromhex(self.sha256)).decode()


def digest_file(path: Path) -> Digest:
    md5, sha = hashlib.md5(), hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(2**20):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return Digest(size, md5.hexdigest(), sha.hexdigest())


def object_key(prefix: str, relative: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{relative}" if prefix else relative


def lake_files(lake_root: Path) -> Iterator[tuple[str, Path]]:
    """(relative key, path) of every file to mirror: no hidden, temporary or lock files."""
    root = Path(lake_root)
    for top in MIRRORED_TOP:
        base = root / top
        if not base.exists():
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(root)
            if any(part.startswith(".") for part in relative.parts):
                continue
            yield relative.as_posix(), path


class _Guard:
    """Turns boto errors into S3LakeError with credentials and URLs masked."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, what: str, exc: Exception) -> S3LakeError:
        text = redact_text(f"{what}: {type(exc).__name__}: {exc}", self.secrets)
        return S3LakeError(text)


def list_objects(client: Any, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """key -> (size, etag without quotes) of every object under ``prefix``."""
    found: dict[str, tuple[int, str]] = {}
    paginator = client.get_paginator("list_objects_v2")
    listing_prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    for page in paginator.paginate(Bucket=bucket, Prefix=listing_prefix):
        for item in page.get("Contents", []) or []:
            found[item["Key"]] = (int(item["Size"]), str(item.get("ETag", "")).strip('"'))
    return found


def _listing(client: Any, bucket: str, prefix: str, guard: _Guard) -> dict[str, tuple[int, str]]:
    try:
        return list_objects(client, bucket, prefix)
    except Exception as exc:
        raise guard(f"cannot list s3://{bucket}/{prefix}", exc) from None


def ensure_bucket(client: Any, bucket: str, *, secrets: Iterable[str | None] = ()) -> None:
    guard = _Guard(secrets)
    try:
        client.head_bucket(Bucket=bucket)
        return
    except Exception as exc:  # botocore ClientError 404/403, or a connection error
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise guard(f"cannot reach bucket {bucket}", exc) from None
    try:
        client.create_bucket(Bucket=bucket)
    except Exception as exc:
        raise guard(f"cannot create bucket {bucket}", exc) from None


class _Manifest:
    """Digests of local files keyed by (size, mtime): a re-run does not re-hash the lake."""

    def __init__(self, lake_root: Path) -> None:
        self.path = Path(lake_root) / MANIFEST
        try:
            self.entries: dict[str, list[Any]] = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            self.entries = {}

    def digest(self, relative: str, path: Path) -> Digest:
        stat = path.stat()
        cached = self.entries.get(relative)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            return Digest(stat.st_size, cached[2], cached[3])
        digest = digest_file(path)
        self.entries[relative] = [stat.st_size, stat.st_mtime_ns, digest.md5, digest.sha256]
        return digest

    def save(self, keep: set[str]) -> None:
        self.entries = {k: v for k, v in self.entries.items() if k in keep}
        write_atomically(self.path, lambda tmp: tmp.write_text(json.dumps(self.entries)))


def _upload(client: Any, bucket: str, key: str, path: Path, digest: Digest) -> None:
    metadata = {"sha256": digest.sha256}
    if digest.size > MULTIPART_ABOVE:
        client.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": metadata})
        return
    with path.open("rb") as body:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentLength=digest.size,
            ChecksumSHA256=digest.sha256_b64,
            Metadata=metadata,
        )


def _verify(client: Any, bucket: str, key: str, digest: Digest) -> None:
    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    problems = []
    if int(head.get("ContentLength", -1)) != digest.size:
        problems.append(f"size {head.get('ContentLength')} != {digest.size}")
    etag = str(head.get("ETag", "")).strip('"')
    if "-" not in etag and etag != digest.md5:
        problems.append(f"ETag {etag} != MD5 {digest.md5}")
    stored_sha = (head.get("Metadata") or {}).get("sha256")
    if stored_sha != digest.sha256:
        problems.append("sha256 metadata does not match")
    checksum = head.get("ChecksumSHA256")
    if checksum and "-" not in checksum and checksum != digest.sha256_b64:
        problems.append("store-computed SHA-256 does not match")
    if problems:
        raise S3LakeError(f"upload of s3://{bucket}/{key} did not verify: {'; '.join(problems)}")


def mirror_lake(
    client: Any,
    lake_root: Path,
    bucket: str,
    prefix: str = "",
    *,
    delete: bool = True,
    secrets: Iterable[str | None] = (),
    progress: Progress | None = None,
) -> MirrorReport:
    """Make ``s3://bucket/prefix/`` an exact, verified copy of the lake's files."""
    started = time.perf_counter()
    guard = _Guard(secrets)
    report = MirrorReport()
    remote = _listing(client, bucket, prefix, guard)
    manifest = _Manifest(lake_root)
    local: set[str] = set()
    for relative, path in lake_files(lake_root):
        key = object_key(prefix, relative)
        local.add(relative)
        report.files += 1
        digest = manifest.digest(relative, path)
        size_etag = remote.get(key)
        if size_etag and size_etag[0] == digest.size and size_etag[1] == digest.md5:
            report.skipped += 1
            continue
        try:
            _upload(client, bucket, key, path, digest)
            _verify(client, bucket, key, digest)
        except S3LakeError:
            raise
        except Exception as exc:
            raise guard(f"upload of s3://{bucket}/{key} failed", exc) from None
        report.uploaded.append(key)
        report.bytes_uploaded += digest.size
        report.verified += 1
        if progress and len(report.uploaded) % 100 == 0:
            progress(f"s3: {len(report.uploaded)} files uploaded")
    manifest.save(local)
    if delete:
        wanted = {object_key(prefix, r) for r in local}
        tops = tuple(object_key(prefix, t) + "/" for t in MIRRORED_TOP)
        stale = sorted(k for k in remote if k not in wanted and k.startswith(tops))
        for i in range(0, len(stale), 1000):
            chunk = stale[i : i + 1000]
            try:
                client.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                )
            except Exception as exc:
                raise guard(f"cannot delete stale objects under s3://{bucket}", exc) from None
        report.deleted = stale
    report.elapsed_s = time.perf_counter() - started
    if progress:
        progress(
            f"s3: {len(report.uploaded)} uploaded and verified, {report.skipped} unchanged, "
            f"{len(report.deleted)} deleted"
        )
    return report


def pull_lake(
    client: Any,
    bucket: str,
    prefix: str,
    lake_root: Path,
    *,
    secrets: Iterable[str | None] = (),
    progress: Progress | None = None,
) -> PullReport:
    """Build (or refresh) a local lake from an S3 lake: a cloud bootstrap.

    Each object is downloaded beside its target under a temporary name, checked against its
    size and SHA-256 metadata, and renamed into place; files already identical are kept.
    """
    started = time.perf_counter()
    guard = _Guard(secrets)
    report = PullReport()
    remote = _listing(client, bucket, prefix, guard)
    strip = len(object_key(prefix, ""))
    for key, (size, etag) in sorted(remote.items()):
        relative = key[strip:]
        parts = Path(relative).parts
        if not parts or parts[0] not in MIRRORED_TOP or any(p.startswith(".") for p in parts):
            continue
        report.objects += 1
        target = Path(lake_root) / relative
        if target.exists() and target.stat().st_size == size:
            local = digest_file(target)
            if "-" not in etag and local.md5 == etag:
                report.skipped += 1
                continue
        write_atomically(target, partial(_download, client, bucket, key, size, guard))
        report.downloaded.append(relative)
        report.bytes_downloaded += size
        report.verified += 1
    report.elapsed_s = time.perf_counter() - started
    if progress:
        progress(f"s3 pull: {len(report.downloaded)} downloaded, {report.skipped} unchanged")
    return report


def _download(client: Any, bucket: str, key: str, size: int, guard: _Guard, tmp: Path) -> None:
    """The object into ``tmp``, verified by its size and SHA-256 metadata."""
    try:
        answer = client.get_object(Bucket=bucket, Key=key)
        with tmp.open("wb") as handle:
            for chunk in answer["Body"].iter_chunks(2**20):
                handle.write(chunk)
    except Exception as exc:
        raise guard(f"download of s3://{bucket}/{key} failed", exc) from None
    got = digest_file(tmp)
    expected_sha = (answer.get("Metadata") or {}).get("sha256")
    if got.size != size or (expected_sha and got.sha256 != expected_sha):
        raise S3LakeError(f"download of s3://{bucket}/{key} did not verify (size or sha256)")


def configure_duckdb_s3(
    con: duckdb.DuckDBPyConnection,
    *,
    endpoint_url: str | None,
    region: str,
    key_id: str | None,
    secret: str | None,
) -> None:
    """A DuckDB secret so ``read_parquet('s3://…')`` reads the lake (httpfs must be loaded)."""
    options = ["TYPE s3", f"REGION '{_q(region)}'"]
    if key_id and secret:
        options += [f"KEY_ID '{_q(key_id)}'", f"SECRET '{_q(secret)}'"]
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        options += [
            f"ENDPOINT '{_q(parts.netloc)}'",
            "URL_STYLE 'path'",
            f"USE_SSL {'true' if parts.scheme == 'https' else 'false'}",
        ]
    try:
        con.execute(f"CREATE OR REPLACE SECRET polymkt_s3 ({', '.join(options)})")
    except duckdb.Error as exc:
        message = redact_text(f"cannot configure DuckDB for S3: {exc}", [key_id, secret])
        raise S3LakeError(message) from None


def s3_table_url(bucket: str, prefix: str, relative: str) -> str:
    return f"s3://{bucket}/{object_key(prefix, relative)}"


def _q(value: str) -> str:
    return value.replace("'", "''")
