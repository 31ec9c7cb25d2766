"""Batches: thousands of items run as jobs a few at a time, results streamed to storage."""
