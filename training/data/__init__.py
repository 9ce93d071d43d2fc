"""Dataset preparation: readers, cleaning, dedup, PII scrubbing, held-out protection, snapshots.

The library functions here (dedup, pii, heldout) are reusable by other parts through the platform.
"""
