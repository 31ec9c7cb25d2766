"""The record layer of jobs: the stored job, its indexes, metrics, live streams and views."""
