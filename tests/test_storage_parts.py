"""Local storage writes a file in parts the way S3 does: parts replace, then join in order."""

from __future__ import annotations

import asyncio

import pytest

from service.errors import NotFound
from service.storage import FileLinks, LocalStorage


def test_parts_join_in_order_and_leave_nothing_behind(tmp_path):
    storage = LocalStorage(tmp_path, FileLinks("secret", 60), "http://files")
    key = "cl_a/2024/05/06/bat_a/results.jsonl"

    upload_id = asyncio.run(storage.start_parts(key, media_type="application/x-ndjson"))
    asyncio.run(storage.put_part(key, upload_id, 2, b"second\n"))
    asyncio.run(storage.put_part(key, upload_id, 1, b"stale\n"))
    asyncio.run(storage.put_part(key, upload_id, 1, b"first\n"))  # a retried part replaces
    asyncio.run(storage.finish_parts(key, upload_id, 2))
    asyncio.run(storage.finish_parts(key, upload_id, 2))  # again, after a crash: harmless

    assert asyncio.run(storage.get(key)) == b"first\nsecond\n"
    assert not [path for path in (tmp_path / ".parts").rglob("*") if path.is_file()]


def test_a_missing_part_is_an_error_not_a_short_file(tmp_path):
    storage = LocalStorage(tmp_path, FileLinks("secret", 60), "http://files")
    key = "cl_a/2024/05/06/bat_b/results.jsonl"
    asyncio.run(storage.put_part(key, "", 1, b"only\n"))

    with pytest.raises(FileNotFoundError):
        asyncio.run(storage.finish_parts(key, "", 2))

    with pytest.raises(NotFound):
        asyncio.run(storage.get(key))
