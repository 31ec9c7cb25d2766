"""A batch's multipart body, read as it arrives: the `batch` spec first, then one items file,
handed on a chunk at a time. python-multipart's streaming parser does the reading, as in
Starlette's `MultiPartParser`, but nothing is spooled: the file's bytes go straight to the
caller, so a body of any size passes through a chunk of memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Literal

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.batches.item_streams import ItemsFormat
from service.errors import InvalidInput, PayloadTooLarge

# part name -> the format its name says, when its Content-Type says none
_PART_NAMES: dict[str, ItemsFormat] = {"csv": "csv", "items": "jsonl"}
_MEDIA_TYPES: dict[str, ItemsFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
}

_Event = (
    tuple[Literal["part"], dict[bytes, bytes]]
    | tuple[Literal["data"], bytes]
    | tuple[Literal["end"], None]
)


class BatchUploadReader:
    """`spec()` first, then `items()`: the bytes of the items file, then `finish()`."""

    def __init__(
        self, content_type: str, body: AsyncIterator[bytes], *, limit: int, spec_limit: int
    ) -> None:
        _, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if not boundary:
            raise _malformed("the multipart body has no boundary")
        self._body = body
        self._limit, self._spec_limit = limit, spec_limit
        self._size = 0
        self._events: deque[_Event] = deque()
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._ended = False
        self.items_format: ItemsFormat | None = None
        self.part_name = ""
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
        )

    async def spec(self) -> bytes:
        """The `batch` part: it must come first, so the items can be read as they arrive."""
        event = await self._next()
        if event is None or event[0] != "part":
            raise InvalidInput("the multipart body needs a field 'batch'", field="batch")
        name = _name(event[1])
        if name != "batch":
            raise InvalidInput(
                f"the part 'batch' (the batch as JSON) must come first, before {name!r}",
                code="BATCH_SPEC_NOT_FIRST",
                field="batch",
            )
        spec = bytearray()
        while (event := await self._next()) is not None and event[0] == "data":
            spec += event[1]
            if len(spec) > self._spec_limit:
                raise PayloadTooLarge(f"the part 'batch' is larger than {self._spec_limit} bytes")
        return bytes(spec)

    async def open_items(self) -> ItemsFormat:
        """Start the items file: `csv` or `items`, its format as its Content-Type (or else its
        name) says."""
        event = await self._next()
        if event is None or event[0] != "part":
            raise InvalidInput(
                "the multipart body needs a file 'csv' (text/csv) or 'items' "
                "(application/x-ndjson) after 'batch'",
                field="items",
            )
        headers = event[1]
        self.part_name = _name(headers)
        if self.part_name not in _PART_NAMES:
            raise InvalidInput(
                f"unknown field {self.part_name!r}: the items go in a file 'csv' or 'items'",
                code="UNKNOWN_FIELD",
                field=self.part_name,
            )
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode()
        self.items_format = _MEDIA_TYPES.get(media_type, _PART_NAMES[self.part_name])
        return self.items_format

    async def items(self) -> AsyncGenerator[bytes, None]:
        while (event := await self._next()) is not None and event[0] == "data":
            yield event[1]

    async def finish(self) -> None:
        """Nothing may follow the items file."""
        event = await self._next()
        if event is not None:
            name = _name(event[1]) if event[0] == "part" else "?"
            raise InvalidInput(
                f"nothing may follow the items file, not {name!r}",
                code="INVALID_MULTIPART",
                field=name,
            )

    async def _next(self) -> _Event | None:
        while not self._events:
            if self._ended:
                return None
            chunk = await anext(self._body, None)
            try:
                if chunk is None:
                    self._ended = True
                    self._parser.finalize()
                    continue
                self._size += len(chunk)
                if self._size > self._limit:
                    raise PayloadTooLarge(f"the request body is larger than {self._limit} bytes")
                self._parser.write(chunk)
            except MultipartParseError as exc:
                raise _malformed(f"the multipart body is malformed: {exc}") from exc
        return self._events.popleft()

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _on_headers_finished(self) -> None:
        self._events.append(("part", self._headers))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(("data", data[start:end]))

    def _on_part_end(self) -> None:
        self._events.append(("end", None))


def _name(headers: dict[bytes, bytes]) -> str:
    _, options = parse_options_header(headers.get(b"content-disposition", b""))
    name = options.get(b"name")
    if name is None:
        raise _malformed('a part\'s Content-Disposition must give its "name"')
    return name.decode("utf-8", "replace")


def _malformed(message: str) -> InvalidInput:
    return InvalidInput(message, code="INVALID_MULTIPART")
