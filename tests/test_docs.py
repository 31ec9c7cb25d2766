"""The docs say what the code does: their examples run, their tables hold, their paths exist."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx

from service.events import WEBHOOK_EVENT_TYPES

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A path into the repository as the docs write it: `service/tasks/generate.py`, docs/webhooks.md.
REPO_PATH = re.compile(
    r"(?<![\w./-])(?:service|webhooks|tests|bench|docs|examples|k8s|\.ci)/[\w./-]*\w"
)


def markdown_tables(text: str) -> list[list[str]]:
    """Each table's rows: a header, a `|---|` rule, then rows up to the first non-row line."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(row)
            tables.append(rows)
    return tables


def test_every_event_type_is_a_row_of_the_one_event_table():
    """Guards docs/webhooks.md: a blank line once cut the batch events out of the table."""
    text = (ROOT / "docs" / "webhooks.md").read_text()
    event_table = next(t for t in markdown_tables(text) if t[0].startswith("| `job.started`"))
    listed = {row.split("|")[1].strip().strip("`") for row in event_table}

    assert set(WEBHOOK_EVENT_TYPES) <= listed


def test_docs_name_only_files_that_are_in_the_repository():
    """The docs stand alone: no path they name is missing, and no design file outside the repo."""
    missing = {}
    for doc in DOCS:
        text = doc.read_text()
        paths = {p for p in REPO_PATH.findall(text) if not p.endswith("/") and "…" not in p}
        absent = sorted(p for p in paths if not (ROOT / p).exists())
        if "DESIGN.md" in text:
            absent.append("DESIGN.md")
        if absent:
            missing[doc.name] = absent

    assert missing == {}


def test_the_license_pyproject_names_is_shipped():
    """pyproject.toml says MIT; the repository must carry the licence text it refers to."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    license_text = (ROOT / "LICENSE").read_text()

    assert declared == "MIT"
    assert license_text.startswith("MIT License")


def test_make_demo_says_what_it_installs_before_installing(tmp_path):
    """The first `make demo` was silent for ~90 s while pip ran: it must say what it is doing."""
    dry_run = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "demo", f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        check=True,
    )
    commands = dry_run.stdout.splitlines()
    install = next(i for i, c in enumerate(commands) if "pip install" in c)

    assert any(c.startswith("echo") and "install" in c for c in commands[:install])


def readme_endpoint_bodies() -> list[dict[str, object]]:
    """The JSON body of every `curl -X POST …/v1/endpoints -d '…'` in the README."""
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"curl -s -X POST \$PIXHOOK/v1/endpoints .*?-d '.*?'", text, re.S)
    return [json.loads(shlex.split(command)[-1]) for command in commands]


def test_the_readme_endpoint_examples_are_accepted_as_written(api: httpx.Client):
    """The first example once failed with 422 INVALID_HEADER: its token held a Unicode '…'."""
    bodies = readme_endpoint_bodies()

    answers = [api.post("/v1/endpoints", json=body) for body in bodies]

    assert len(bodies) >= 2
    assert [(a.status_code, a.json().get("error")) for a in answers] == [(201, None)] * len(bodies)
    for answer in answers:
        api.delete(f"/v1/endpoints/{answer.json()['id']}")


# Upper-case strings in the code that are not error codes: setting names are documented with the
# settings; the guard's reasons are told apart in code and surface only inside a message; every
# raise of Conflict or Forbidden gives its own code in place of the class's default.
NOT_ERROR_CODES = {"FORBIDDEN_ADDRESS", "SCHEME_NOT_ALLOWED", "CONFLICT", "FORBIDDEN"}
CODE_LIKE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


def _code_positions(tree: ast.AST) -> Iterator[str]:
    """Single-word codes where they can only be codes: `code = "GONE"`, `code="TIMEOUT"` and
    `TIMEOUT = "TIMEOUT"`; every multi-word upper-case string (`ENDPOINT_GONE`) anywhere else."""
    exported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            exported |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if node.value.value in names or "code" in names:
                yield str(node.value.value)
        elif isinstance(node, ast.keyword) and node.arg in ("code", "error_code"):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                yield node.value.value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if CODE_LIKE.fullmatch(node.value) and node.value not in exported:
                yield node.value


def codes_in_code() -> set[str]:
    found = set()
    for package in ("service", "webhooks"):
        for path in (ROOT / package).rglob("*.py"):
            found |= set(_code_positions(ast.parse(path.read_text())))
    return {c for c in found if not c.startswith("PIXHOOK_")} - NOT_ERROR_CODES


def documented_codes() -> set[str]:
    text = (ROOT / "docs" / "errors.md").read_text()
    return {
        match
        for table in markdown_tables(text)
        for row in table
        for match in re.findall(r"^\|(?: [0-9x]{3} \|)? `([A-Z][A-Z0-9_]+)` \|", row)
    }


def test_every_error_code_the_code_can_give_is_documented():
    """docs/errors.md lacked five API codes and four delivery codes that users were answered."""
    assert codes_in_code() - documented_codes() == set()


def test_every_documented_error_code_exists_in_the_code():
    assert documented_codes() - codes_in_code() == set()
