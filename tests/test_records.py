"""Records written by a newer release still read after a rollback."""

from __future__ import annotations

import json

from service.clients.store import ClientLimits
from service.jobs.model import Job


def test_a_job_record_with_fields_this_release_does_not_know_still_reads():
    job = Job("job_a", "image.transform", "cli_a", {"width": 10}, None, 1.0)
    newer = json.loads(job.to_json()) | {"priority": "high"}

    assert Job.from_json(json.dumps(newer)) == job


def test_client_limits_with_unknown_fields_still_read():
    newer = json.dumps({"requests_per_s": 5.0, "burst": None, "daily_cap": 100})

    assert ClientLimits.from_json(newer) == ClientLimits(requests_per_s=5.0)
