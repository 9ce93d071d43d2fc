"""Checkpoint evaluation and promotion gates: MMLU/CMMLU letter scoring, perplexity, gate decisions, reports.

Runs as a child process (``keel eval …``): reads a checkpoint folder
and data files, writes JSON and HTML beside the checkpoint. It never imports serving or the platform.
"""

from training.eval.heldout import domain_heldout_paths, domain_heldout_texts

__all__ = ["domain_heldout_paths", "domain_heldout_texts"]
