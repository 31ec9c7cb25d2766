"""`pixhook dev`: the whole stack on this machine until Ctrl-C, with a client to try it with."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from service.cli.devstack import (
    RunningStack,
    StackError,
    failure_report,
    local_stack,
    port_is_free,
    scratch_dir,
)
from service.config import LoggingSettings, read_section


def run_dev(port: int) -> int:
    """Run until Ctrl-C or SIGTERM (0), or until a piece of the stack fails (1)."""
    if port and not port_is_free(port):
        print(
            f"pixhook dev: port {port} is in use; choose another --port, or leave it out "
            "for a free one",
            file=sys.stderr,
        )
        return 1
    with scratch_dir("pixhook-dev-") as workdir:
        # The children log as text, for a person reading them, unless told otherwise.
        chosen = read_section(LoggingSettings, os.environ).format or "text"
        log_format = {"PIXHOOK_LOG_FORMAT": chosen}
        try:
            with local_stack(workdir, log_format, port=port) as stack:
                return _run_until_interrupted(stack, workdir)
        except StackError as exc:
            print(f"pixhook dev: {failure_report(exc)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # while starting
            return 130


def _print_welcome(stack: RunningStack, workdir: Path) -> None:
    print(f"pixhook dev is running (logs in {workdir / 'logs'}, removed on exit)")
    print(f"  API             {stack.api_url}")
    print(f"  Redis           {stack.redis_url}")
    print(f"  API key         {stack.client.api_key}")
    print(f"  webhook secret  {stack.client.webhook_secret}")
    print(f"  console         {stack.api_url}/console (sign in with the API key)")
    print("Submit a job:")
    print(
        f"  curl -H 'Authorization: Bearer {stack.client.api_key}' \\\n"
        """    -F job='{"type":"image.transform","input":{"width":256}}' \\\n"""
        f"    -F image=@photo.jpg {stack.api_url}/v1/jobs"
    )
    print("Press Ctrl-C to stop.", flush=True)


def _run_until_interrupted(stack: RunningStack, workdir: Path) -> int:
    """0 on Ctrl-C or SIGTERM, from the moment the welcome says to press it; raises when a
    piece of the stack stops."""
    try:
        _print_welcome(stack, workdir)
        while True:
            stack.processes.check_running()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
