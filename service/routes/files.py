"""`/files/{token}`: locally stored outputs behind signed, expiring links.

Only `local:` storage is served here; with S3 storage job URLs are presigned S3 links, and every
token answers 404 `FILE_NOT_FOUND` (`S3Storage.resolve_link`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from service.auth import runtime


async def get_file(request: Request) -> FileResponse:
    rt = runtime(request)
    stored = rt.storage.resolve_link(request.path_params["token"])
    return FileResponse(
        stored.path,
        media_type=stored.media_type,
        headers={
            "cache-control": f"private, max-age={int(rt.settings.file_url_ttl_s)}",
            "x-content-type-options": "nosniff",
        },
    )


routes = [Route("/files/{token}", get_file, methods=["GET"])]
