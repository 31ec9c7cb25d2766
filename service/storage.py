"""Where job inputs and outputs live, and the signed, expiring URLs that hand them out."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from service.errors import Forbidden, NotFound, ServiceUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("pixhook.storage")

# SigV4 presigned URLs are valid for at most seven days.
MAX_PRESIGN_S = 7 * 86400
# Outputs live under this folder when storage hands them out publicly, so that a bucket policy
# (or a CDN's origin path) can expose them and nothing else: inputs and results stay private.
PUBLIC_FOLDER = "public"
DEFAULT_PUBLIC_CACHE_CONTROL = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class StoredFile:
    path: Path
    media_type: str


class Storage(Protocol):
    """Where job inputs and outputs live; keys come from `job_file_key` (and `output_key`)."""

    # Outputs are handed out at permanent public URLs (S3 public mode): see `output_key`.
    public_outputs: bool

    async def put(self, key: str, data: bytes, *, media_type: str | None = None) -> None:
        """Store `data` under `key`; `media_type` defaults to a guess from the key's extension."""
        ...

    async def get(self, key: str) -> bytes:
        """The stored bytes; `NotFound` (`FILE_NOT_FOUND`) when there are none."""
        ...

    def url(self, key: str, media_type: str) -> str:
        """A URL that downloads the file: fresh and expiring, or permanent for a public output."""
        ...

    def resolve_link(self, token: str) -> StoredFile:
        """The file a `/files/{token}` link names; `NotFound` for storage the API does not serve."""
        ...

    # A file written in numbered parts as its content arrives (a batch's results), so no process
    # ever holds all of it. Every part but the last must be at least `min_part_bytes`.
    min_part_bytes: int

    async def start_parts(self, key: str, *, media_type: str) -> str:
        """Begin a file written in parts; returns the upload id the other calls take."""
        ...

    async def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> None:
        """Store part `number` (from 1); storing the same number again replaces it."""
        ...

    async def finish_parts(self, key: str, upload_id: str, count: int) -> None:
        """Join parts 1..count into the file at `key`; calling it again once done is harmless."""
        ...


def guess_media_type(key: str) -> str:
    return mimetypes.guess_type(key, strict=False)[0] or "application/octet-stream"


class FileLinks:
    """itsdangerous-signed tokens naming a stored key; they expire after `ttl_s`."""

    def __init__(self, secret_key: str, ttl_s: float) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="pixhook.files")
        self.ttl_s = ttl_s

    def token(self, key: str, media_type: str) -> str:
        return self._serializer.dumps({"k": key, "t": media_type})

    def open(self, token: str) -> tuple[str, str]:
        """The (key, media type) a token names; `Forbidden` when expired or forged."""
        try:
            payload = self._serializer.loads(token, max_age=int(self.ttl_s))
        except SignatureExpired as exc:
            raise Forbidden("this file link has expired", code="LINK_EXPIRED") from exc
        except BadSignature as exc:
            raise Forbidden("this file link is not valid", code="LINK_INVALID") from exc
        return str(payload["k"]), str(payload["t"])


class LocalStorage:
    """Files under one directory, served by the API at `/files/{token}`."""

    min_part_bytes = 256 * 1024
    public_outputs = False

    def __init__(self, root: Path, links: FileLinks, public_url: str) -> None:
        self.root = root.resolve()
        self._links = links
        self._public_url = public_url

    async def put(self, key: str, data: bytes, *, media_type: str | None = None) -> None:
        # The media type travels in each link instead (see `url`).
        with _outage("put", key, OSError):
            await asyncio.to_thread(self._write, self._path(key), data)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        with _outage("get", key, OSError):
            try:
                return await asyncio.to_thread(path.read_bytes)
            except FileNotFoundError as exc:
                raise NotFound("stored file is gone", code="FILE_NOT_FOUND") from exc

    def url(self, key: str, media_type: str) -> str:
        return f"{self._public_url}/files/{self._links.token(key, media_type)}"

    def resolve_link(self, token: str) -> StoredFile:
        key, media_type = self._links.open(token)
        path = self._path(key)
        if not path.is_file():
            raise NotFound("stored file is gone", code="FILE_NOT_FOUND")
        return StoredFile(path, media_type)

    async def start_parts(self, key: str, *, media_type: str) -> str:
        return ""  # parts live in a folder named after the key; nothing to start

    async def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._parts_dir(key) / f"{number:06d}", data)

    async def finish_parts(self, key: str, upload_id: str, count: int) -> None:
        await asyncio.to_thread(self._join_parts, key, count)

    def _join_parts(self, key: str, count: int) -> None:
        path, parts = self._path(key), self._parts_dir(key)
        if path.exists() and not parts.exists():
            return  # joined already, by us or by a worker that died right after
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as joined:
                for number in range(1, count + 1):
                    with open(parts / f"{number:06d}", "rb") as part:
                        shutil.copyfileobj(part, joined)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        shutil.rmtree(parts, ignore_errors=True)

    def _parts_dir(self, key: str) -> Path:
        return self._path(f".parts/{key}")

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise NotFound("no such file", code="FILE_NOT_FOUND")
        return path

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        # Write then rename, so a reader never sees half a file.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def job_file_key(client_id: str, job_id: str, created_at: float, filename: str) -> str:
    """`{client}/{yyyy}/{mm}/{dd}/{job id}/{filename}`: a folder per job, easy to expire by day."""
    day = datetime.fromtimestamp(created_at, UTC).strftime("%Y/%m/%d")
    return f"{client_id}/{day}/{job_id}/{filename}"


def output_key(storage: Storage, key: str) -> str:
    """Where a job's output named `key` is stored: under `public/` when outputs are public. The
    key itself then says that its file is public, whatever the setting becomes later."""
    return f"{PUBLIC_FOLDER}/{key}" if storage.public_outputs else key


class S3Storage:
    """Objects in an S3 (or S3-compatible) bucket under a key prefix, handed out as presigned URLs.

    boto3 blocks, so every request runs in a thread; one client per process is shared by them all
    (boto3 clients are thread-safe). The API does not serve these files: `resolve_link` refuses.
    """

    min_part_bytes = 5 * 1024 * 1024  # S3's own minimum for every part but the last

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str,
        ttl_s: float,
        *,
        public_base_url: str = "",
        public_cache_control: str = DEFAULT_PUBLIC_CACHE_CONTROL,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.expires_s = max(1, min(int(ttl_s), MAX_PRESIGN_S))
        # Public mode: outputs at `<base>/<object key>`, kept by browsers and CDNs for long.
        self.public_base_url = public_base_url.rstrip("/")
        self.public_cache_control = public_cache_control
        self.public_outputs = bool(self.public_base_url)

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _is_public(self, key: str) -> bool:
        return self.public_outputs and key.startswith(f"{PUBLIC_FOLDER}/")

    def _cache_control(self, key: str) -> str:
        if self._is_public(key):
            return self.public_cache_control
        return f"private, max-age={self.expires_s}"

    async def put(self, key: str, data: bytes, *, media_type: str | None = None) -> None:
        await asyncio.to_thread(self._write, key, data, media_type or guess_media_type(key))

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._read, self.object_key(key))

    def _write(self, key: str, data: bytes, media_type: str) -> None:
        with _outage("put", key, *_boto_errors()):
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.object_key(key),
                Body=data,
                ContentType=media_type,
                CacheControl=self._cache_control(key),
            )

    def _read(self, object_key: str) -> bytes:
        from botocore.exceptions import ClientError

        with _outage("get", object_key, *_boto_errors()):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=object_key)
                with response["Body"] as body:
                    return body.read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    raise NotFound("stored file is gone", code="FILE_NOT_FOUND") from exc
                raise

    async def start_parts(self, key: str, *, media_type: str) -> str:
        return await asyncio.to_thread(self._start_parts, key, media_type)

    async def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> None:
        await asyncio.to_thread(self._put_part, key, upload_id, number, data)

    async def finish_parts(self, key: str, upload_id: str, count: int) -> None:
        await asyncio.to_thread(self._finish_parts, key, upload_id, count)

    def _start_parts(self, key: str, media_type: str) -> str:
        with _outage("parts", key, *_boto_errors()):
            upload = self._client.create_multipart_upload(
                Bucket=self.bucket,
                Key=self.object_key(key),
                ContentType=media_type,
                CacheControl=self._cache_control(key),
            )
        return upload["UploadId"]

    def _put_part(self, key: str, upload_id: str, number: int, data: bytes) -> None:
        with _outage("parts", key, *_boto_errors()):
            self._client.upload_part(
                Bucket=self.bucket,
                Key=self.object_key(key),
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
            )

    def _finish_parts(self, key: str, upload_id: str, count: int) -> None:
        from botocore.exceptions import ClientError

        object_key = self.object_key(key)
        with _outage("parts", key, *_boto_errors()):
            try:
                # S3 wants each part's ETag back; asking for them keeps them out of Redis.
                pages = self._client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id
                )
                etags = {
                    p["PartNumber"]: p["ETag"] for page in pages for p in page.get("Parts", [])
                }
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=object_key,
                    UploadId=upload_id,
                    MultipartUpload={
                        "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in range(1, count + 1)]
                    },
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                    return  # completed already, by us or by a worker that died right after
                raise

    def url(self, key: str, media_type: str) -> str:
        if self._is_public(key):
            return f"{self.public_base_url}/{quote(self.object_key(key))}"
        # Signed locally with the client's credentials: no request to S3.
        return self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.object_key(key),
                # The job's recorded type wins over whatever the object was stored with.
                "ResponseContentType": media_type,
            },
            ExpiresIn=self.expires_s,
        )

    def resolve_link(self, token: str) -> StoredFile:
        raise NotFound("files are served from object storage", code="FILE_NOT_FOUND")

    def close(self) -> None:
        self._client.close()


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def parse_s3_spec(spec: str) -> tuple[str, str]:
    """`s3://bucket[/prefix]` as (bucket, prefix); `ValueError` saying what is wrong otherwise."""
    rest = spec.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{spec!r} names no bucket; use s3://bucket[/prefix]")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(
            f"{bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)"
        )
    if any(c in prefix for c in "?#\\") or "//" in prefix.strip("/"):
        raise ValueError(f"{prefix!r} is not a usable key prefix")
    return bucket, prefix.strip("/")


class StorageUnavailable(ServiceUnavailable):
    """An outage of the store, not the caller's fault: the API answers 503, a job fails with it.
    `operation` (put, get or parts) is what failed, for `pixhook_storage_errors_total`."""

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message, code="STORAGE_UNAVAILABLE")
        self.operation = operation


@contextmanager
def _outage(operation: str, key: str, *errors: type[Exception]) -> Iterator[None]:
    """`errors` become StorageUnavailable. Callers see what failed, never the store's endpoint,
    bucket, key or path (boto's and the OS's messages carry them): those go to the log."""
    try:
        yield
    except errors as exc:
        log.warning("storage %s of %s failed: %s", operation, key, exc)
        message = f"storage is unavailable ({operation} failed); try again shortly"
        raise StorageUnavailable(message, operation=operation) from exc


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError


def s3_client(endpoint_url: str, region: str) -> S3Client:
    """A client using boto3's usual credential chain (`AWS_ACCESS_KEY_ID`, profiles, roles...)."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        signature_version="s3v4",
        # MinIO and most S3-compatible servers expect path-style URLs on a custom endpoint.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=32,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)


def open_storage(
    spec: str,
    secret_key: str,
    ttl_s: float,
    public_url: str,
    *,
    s3_endpoint_url: str = "",
    s3_region: str = "us-east-1",
    s3_public_base_url: str = "",
    s3_public_cache_control: str = DEFAULT_PUBLIC_CACHE_CONTROL,
) -> Storage:
    """Storage from `PIXHOOK_STORAGE`: `local:DIR` or `s3://bucket[/prefix]`."""
    if spec.startswith("s3://"):
        bucket, prefix = parse_s3_spec(spec)
        return S3Storage(
            s3_client(s3_endpoint_url, s3_region),
            bucket,
            prefix,
            ttl_s,
            public_base_url=s3_public_base_url,
            public_cache_control=s3_public_cache_control,
        )
    root = Path(spec.removeprefix("local:"))
    return LocalStorage(root, FileLinks(secret_key, ttl_s), public_url)
