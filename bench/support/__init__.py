"""What the benchmarks and the tests both drive a real platform with: a `keel up` child process
(launcher.py) and checkpoints derived from the base with known differences (derive.py). Tests import
these from here; nothing in bench/ imports tests/."""
