"""The docs say what the code does: their examples run, their tables hold, their paths exist."""

from __future__ import annotations

import ast
import io
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
from PIL import Image

from service.config.docs import COMMAND, configuration_markdown
from service.publishing import WEBHOOK_EVENT_TYPES
from tests.support.batches import wait_for_batch
from tests.support.images import image_bytes
from tests.support.raw_servers import Response, Scripted

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Generated from the settings, and kept present and current by the test that generates it.
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


def test_the_configuration_reference_is_the_one_the_settings_generate():
    """docs/configuration.md is written from service/config/; a setting added, renamed or
    re-documented there without regenerating it fails here."""
    written = (ROOT / "docs" / "configuration.md").read_text()

    assert written == configuration_markdown(), f"docs/configuration.md is stale: run `{COMMAND}`"


def test_docs_name_only_files_that_are_in_the_repository():
    """The docs stand alone: no path they name is missing, and no design file outside the repo."""
    missing = {}
    for doc in DOCS:
        text = doc.read_text()
        paths = {p for p in REPO_PATH.findall(text) if not p.endswith("/") and "…" not in p}
        absent = sorted(p for p in paths if not (ROOT / p).exists())
        absent += [name for name in ("DESIGN.md", "STYLE.md") if name in text]
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


def endpoint_examples() -> list[dict[str, object]]:
    """The JSON body of every `curl -X POST …/v1/endpoints -d '…'` in docs/api.md."""
    text = (ROOT / "docs" / "api.md").read_text()
    commands = re.findall(r"curl -s -X POST \$PIXHOOK/v1/endpoints .*?-d '.*?'", text, re.S)
    return [json.loads(shlex.split(command)[-1]) for command in commands]


def test_the_endpoint_examples_are_accepted_as_written(api: httpx.Client):
    """The first example once failed with 422 INVALID_HEADER: its token held a Unicode '…'."""
    bodies = endpoint_examples()

    answers = [api.post("/v1/endpoints", json=body) for body in bodies]

    assert len(bodies) >= 2
    assert [(a.status_code, a.json().get("error")) for a in answers] == [(201, None)] * len(bodies)
    for answer in answers:
        api.delete(f"/v1/endpoints/{answer.json()['id']}")


def test_the_readme_job_runs_and_its_webhook_arrives_as_shown(api: httpx.Client, make_receiver):
    """The front page's one example: its job as written, its webhook a verified job.completed."""
    example = re.search(r"-F job='(.*?)'", (ROOT / "README.md").read_text(), re.S)
    assert example is not None
    job = json.loads(example[1])
    receiver = make_receiver()
    photo = io.BytesIO()
    Image.new("RGB", (960, 640), "#c0392b").save(photo, "JPEG")

    answer = api.post(
        "/v1/jobs",
        data={"job": json.dumps(job | {"webhook_url": receiver.url})},
        files={"image": ("photo.jpg", photo.getvalue(), "image/jpeg")},
    )
    [webhook] = receiver.wait_for(1)

    assert answer.status_code == 202, answer.text
    assert webhook.verified
    assert webhook.payload["type"] == "job.completed"
    assert webhook.payload["data"]["metadata"] == {"sku": "SNEAKER-42"}
    assert webhook.payload["data"]["output"]["images"][0]["width"] == 512


def test_the_catalogue_run_works_as_written(api: httpx.Client, make_receiver, serve):
    """docs/catalogue.md, run: its spec and CSV, the webhooks, the results' columns, its retry."""
    text = (ROOT / "docs" / "catalogue.md").read_text()
    spec = json.loads(re.search(r"-F 'batch=(.*?)'", text, re.S)[1])  # type: ignore[index]
    catalogue, results_example = re.findall(r"```csv\n(.*?)```", text, re.S)
    retry_body = json.loads(re.search(r"/retry .*?-d '(.*?)'", text, re.S)[1])  # type: ignore[index]
    back = threading.Event()  # the lamp's photo, missing until put back

    def photo(number: int) -> Response:
        if "lamp" in photos.requests[number].request_line and not back.is_set():
            return Response(404, body=b"not found")
        return Response(200, {"content-type": "image/jpeg"}, image_bytes((80, 60)))

    photos = serve(Scripted(photo))
    receiver = make_receiver()
    csv = catalogue.replace("https://shop.example.com/p/", photos.url("/p/"))
    spec["webhook_url"] = receiver.url

    answer = api.post(
        "/v1/batches", data={"batch": json.dumps(spec)}, files={"csv": ("c.csv", csv, "text/csv")}
    )
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["id"]
    started, completed = sorted(
        receiver.wait_for(2), key=lambda w: w.payload["type"] != "batch.started"
    )
    assert (started.payload["type"], completed.payload["type"]) == (
        "batch.started",
        "batch.completed",
    )
    [failure] = completed.payload["data"]["failures"]
    assert (failure["index"], failure["reference"]) == (2, "LAMP-3")
    assert failure["error"]["code"] == "IMAGE_FETCH_FAILED"
    results = api.get(f"/v1/batches/{batch_id}/results.csv").text
    assert results.splitlines()[0] == results_example.splitlines()[0]
    assert [row.split(",")[1] for row in results.splitlines()[1:]] == [
        "SNEAKER-42",
        "MUG-7",
        "LAMP-3",
    ]

    back.set()
    retried = api.post(f"/v1/batches/{batch_id}/retry", json=retry_body)
    assert retried.status_code == 202, retried.text
    assert wait_for_batch(api, batch_id)["counts"]["succeeded"] == 3


def test_the_readme_is_a_front_page_not_the_manual():
    """It was the reference manual, 48 KB; the reference lives in docs/ and the README links it."""
    readme = ROOT / "README.md"
    linked = {target.partition("#")[0] for target in LINK.findall(prose(readme.read_text()))}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}

    assert len(readme.read_bytes()) <= 12 * 1024
    assert pages - linked == set()


# Code holds no links, and a fenced block no headings (a shell comment starts with `#`).
FENCED = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# A Markdown link's target; its text may wrap onto the next line.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    return INLINE_CODE.sub("", FENCED.sub("", text))


def heading_ids(page: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    ids: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *$", FENCED.sub("", page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        ids.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return ids


def test_every_link_in_the_docs_leads_to_a_file_and_heading_of_the_repository():
    """The reference moved out of the README into docs/: no link was left pointing at nothing."""
    broken = []
    for doc in DOCS:
        for target in LINK.findall(prose(doc.read_text())):
            path, _, anchor = target.partition("#")
            page = (doc.parent / path).resolve() if path else doc
            if ":" in path or not page.is_relative_to(ROOT):
                broken.append(f"{doc.name}: {target} (outside the repository)")
            elif not page.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and (page.suffix != ".md" or anchor not in heading_ids(page)):
                broken.append(f"{doc.name}: {target} (no such heading)")

    assert broken == []


def pixhook_subcommands(*words: str) -> list[str]:
    """What `pixhook WORDS --help` lists under its positional arguments, e.g. `{api,worker,…}`."""
    pixhook = Path(sys.executable).parent / "pixhook"
    run = subprocess.run([pixhook, *words, "--help"], capture_output=True, text=True, check=True)
    listed = re.search(r"positional arguments:\n +\{([\w,-]+)\}", run.stdout)
    return listed[1].split(",") if listed else []


def test_docs_cli_has_a_row_for_every_command_of_pixhook():
    """The command table moved from the README to docs/cli.md; it stays the whole CLI."""
    [table] = markdown_tables((ROOT / "docs" / "cli.md").read_text())
    rows = {re.match(r"\| `pixhook ([a-z][\w-]*(?: [a-z][\w-]*)?)", row) for row in table}
    documented = {row[1] for row in rows if row}
    commands = {
        f"{command} {sub}" if sub else command
        for command in pixhook_subcommands()
        for sub in pixhook_subcommands(command) or [""]
    }

    assert documented == commands


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
