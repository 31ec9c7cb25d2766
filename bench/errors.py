"""The one error of the benches: a run that cannot measure what it set out to."""


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to (a request refused, a process exited,
    a wait timed out, data not as planned); the message says why."""
