"""Where job inputs and outputs live, and the signed, expiring URLs that hand them out."""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from service.errors import Forbidden, NotFound


@dataclass(frozen=True)
class StoredFile:
    path: Path
    media_type: str


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

    def __init__(self, root: Path, links: FileLinks, public_url: str) -> None:
        self.root = root.resolve()
        self._links = links
        self._public_url = public_url

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
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


def open_storage(spec: str, secret_key: str, ttl_s: float, public_url: str) -> LocalStorage:
    """Storage from `PIXHOOK_STORAGE` (`local:DIR`)."""
    root = Path(spec.removeprefix("local:"))
    return LocalStorage(root, FileLinks(secret_key, ttl_s), public_url)
