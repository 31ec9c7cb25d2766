"""`/files/{token}`: locally stored outputs behind signed, expiring links.

Only `local:` storage is served here; with S3 storage job URLs are presigned S3 links, and every
token answers 404 `FILE_NOT_FOUND` (`S3Storage.resolve_link`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from service.api.operations import Operation, Reply, documented
from service.runtime import runtime

# Shown in the browser: images pixhook encoded or checked with Pillow. Any other type is a
# download, and one not listed here goes out as octet-stream, so no stored file is ever served
# as HTML or script (service/api/security_headers.py adds a sandboxing CSP on top).
INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/avif", "image/gif"})
DOWNLOAD_TYPES = frozenset({"application/x-ndjson", "application/json"})
_SERVED = sorted(INLINE_TYPES | DOWNLOAD_TYPES) + ["application/octet-stream"]


@documented(
    Operation(
        "A stored output, behind a signed and expiring link",
        (Reply(200, "the file", {media: {"type": "string"} for media in _SERVED}),),
        authenticated=False,
        errors={
            403: ("LINK_EXPIRED", "LINK_INVALID"),
            404: ("FILE_NOT_FOUND",),
            503: ("STORAGE_UNAVAILABLE",),
        },
    )
)
async def get_file(request: Request) -> FileResponse:
    rt = runtime(request)
    stored = rt.storage.resolve_link(request.path_params["token"])
    media_type = stored.media_type
    if media_type not in INLINE_TYPES | DOWNLOAD_TYPES:
        media_type = "application/octet-stream"
    return FileResponse(
        stored.path,
        media_type=media_type,
        filename=stored.path.name,
        content_disposition_type="inline" if media_type in INLINE_TYPES else "attachment",
        headers={
            "cache-control": f"private, max-age={int(rt.settings.storage.file_url_ttl_s)}",
            "x-content-type-options": "nosniff",
        },
    )


routes = [Route("/files/{token}", get_file, methods=["GET"])]
