"""Benchmarks: real speech to a real server (or the in-process core), measured and printed."""
