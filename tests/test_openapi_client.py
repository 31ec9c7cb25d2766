"""A client generated from `/openapi.json` calls every model by a name the document gives it.

Regression (issue 16): every schema was written inline, so openapi-python-client made up 594
model names such as `CreateJobJsonBodyType0`. Now bodies, replies and what they hold are named
components (`TransformJob`, `ImageSource`, `CreateJob422Error`) referred to by `$ref`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from service.api.routes.system import openapi_document
from service.app import create_app
from service.config import Settings

# What the generator calls what the document left unnamed: a union's `Type0`, a `JsonBody`.
ANONYMOUS = re.compile(r"type_?\d|json_?body", re.IGNORECASE)


def generate_client(tmp_path: Path) -> list[str]:
    """The model modules openapi-python-client writes for the document, by name."""
    settings = Settings()
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(openapi_document(create_app(settings).routes, settings)))
    config = tmp_path / "config.yml"
    config.write_text("post_hooks: []\n")  # no formatter run over the output: not needed here
    client = tmp_path / "client"
    generator = Path(sys.executable).parent / "openapi-python-client"
    command: list[str | Path] = [generator, "generate", "--path", document, "--config", config]
    result = subprocess.run(
        [*command, "--meta", "none", "--output-path", client],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    return sorted(path.stem for path in (client / "models").glob("*.py"))


def test_a_generated_client_names_every_model_after_the_document(tmp_path):
    models = generate_client(tmp_path)

    assert "transform_job" in models and "create_job_422_error" in models
    assert [name for name in models if ANONYMOUS.search(name)] == []
