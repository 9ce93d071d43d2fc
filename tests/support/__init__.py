"""Helpers only tests use (the benchmarks' shared helpers live in bench/support/)."""
