"""Where a job's outputs are stored: in the job's own folder, or by its `output_name`.

A named output is stored at `{client}/named/{rendered name}`: under the client's own folder, so
no client can reach another's files, and beside (never inside) the dated job folders, so no name
can land on a job's input. Two jobs that render the same name write the same file: the last wins.
"""

from __future__ import annotations

from service.jobs.model import Job
from service.output_names import check_segments, render
from service.storage import Storage, job_file_key, output_key

NAMED_FOLDER = "named"


def named_output_key(storage: Storage, job: Job, variant: str, ext: str) -> str:
    """Where one of `job`'s outputs is stored: by its `output_name` when it has one, else in the
    job's own folder."""
    if job.output_name is None:
        filename = f"{variant}.{ext}"
        return output_key(storage, job_file_key(job.client_id, job.id, job.created_at, filename))
    name = render(job.output_name, job.reference or "", variant, ext, job.id, job.batch_index)
    check_segments(name, "output_name")  # checked at submission; held here all the same
    return output_key(storage, f"{job.client_id}/{NAMED_FOLDER}/{name}")
