"""Items from a file that arrives in chunks: CSV rows or JSON lines, parsed as the bytes come,
so that a file of any size is read with a few chunks in memory. Bytes in, items out: no Redis,
no HTTP.

A malformed file refuses the whole batch (`INVALID_CSV`, `INVALID_JSONL`, with its line): a
file that is not what it claims to be would otherwise fail every one of its items.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections import deque
from collections.abc import Iterator
from typing import Any, Literal

from service.errors import InvalidInput

ItemsFormat = Literal["csv", "jsonl"]
# A line longer than this is no catalogue row: refused rather than buffered without end.
MAX_LINE_BYTES = 1024 * 1024


class ItemStream:
    """Feed it chunks; each `feed` returns the items that are complete so far."""

    def __init__(self, field: str) -> None:
        self.field = field
        self.line = 0  # lines read, for error messages
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._pending = ""

    def feed(self, chunk: bytes) -> list[Any]:
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise self._error(f"the file must be UTF-8 (near line {self.line + 1})") from exc
        return self._lines(text, final=False)

    def close(self) -> list[Any]:
        """The items the last chunk held; the file has ended."""
        try:
            text = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise self._error("the file must be UTF-8 (it ends inside a character)") from exc
        return self._lines(text, final=True)

    def _lines(self, text: str, *, final: bool) -> list[Any]:
        # Split on "\n" only: str.splitlines would also split on characters a CSV value may hold.
        *complete, self._pending = (self._pending + text).split("\n")
        lines = [line + "\n" for line in complete]
        if final and self._pending:
            lines.append(self._pending)
            self._pending = ""
        if len(self._pending) > MAX_LINE_BYTES:
            raise self._error(f"line {self.line + 1} is longer than {MAX_LINE_BYTES} bytes")
        return self._items(lines, final=final)

    def _items(self, lines: list[str], *, final: bool) -> list[Any]:
        raise NotImplementedError

    def _error(self, message: str) -> InvalidInput:
        raise NotImplementedError


class JsonLines(ItemStream):
    """One JSON value per line; blank lines are skipped."""

    def _items(self, lines: list[str], *, final: bool) -> list[Any]:
        items = []
        for text in lines:
            self.line += 1
            if not text.strip():
                continue
            try:
                items.append(json.loads(text))
            except (ValueError, RecursionError) as exc:
                raise self._error(f"line {self.line} is not JSON: {exc}") from exc
        return items

    def _error(self, message: str) -> InvalidInput:
        return InvalidInput(message, code="INVALID_JSONL", field=self.field)


class CsvRows(ItemStream):
    """Rows as `{column: value}` after the header row. A quoted value may hold line breaks:
    lines go to the CSV reader only once their quotes balance, so it never sees half a row."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.columns: list[str] | None = None
        self._record: list[str] = []  # lines of a row whose quotes are still open
        self._quotes = 0
        self._ready: deque[str] = deque()

    def _items(self, lines: list[str], *, final: bool) -> list[Any]:
        for text in lines:
            self.line += 1
            self._record.append(text)
            self._quotes += text.count('"')
            if sum(len(part) for part in self._record) > MAX_LINE_BYTES:
                raise self._error(f"the row ending at line {self.line} is too long")
            if self._quotes % 2 == 0:
                self._ready.extend(self._record)
                self._record, self._quotes = [], 0
        if final and self._record:
            raise self._error(f"the file ends inside a quoted value (line {self.line})")
        if final and self.columns is None and not self._ready:
            raise self._error("the CSV file has no header row")
        return self._rows()

    def _rows(self) -> list[dict[str, str]]:
        rows = []
        while self._ready:
            reader = csv.reader(_drain(self._ready), strict=True)
            try:
                for cells in reader:
                    row = self._row(cells)
                    if row is not None:
                        rows.append(row)
            except csv.Error as exc:
                raise self._error(
                    f"the CSV file is malformed near line {self.line}: {exc}"
                ) from exc
        return rows

    def _row(self, cells: list[str]) -> dict[str, str] | None:
        if not cells:
            return None  # a blank line, as csv.DictReader skips it
        if self.columns is None:
            self.columns = cells
            return None
        return dict(zip(self.columns, cells, strict=False))

    def _error(self, message: str) -> InvalidInput:
        return InvalidInput(message, code="INVALID_CSV", field=self.field)


def _drain(lines: deque[str]) -> Iterator[str]:
    while lines:
        yield lines.popleft()


def item_stream(items_format: ItemsFormat, field: str) -> ItemStream:
    return CsvRows(field) if items_format == "csv" else JsonLines(field)
