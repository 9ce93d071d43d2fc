"""Primitives every Keel package may import (keel, serving, training, flywheel): atomic files, JSONL with
``path:line`` errors, text normalisation and MinHash. It imports none of those packages (lint-imports)."""
