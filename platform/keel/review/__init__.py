"""Review of mined preference pairs: the lease queue annotators draw from and the candidate sampler."""
