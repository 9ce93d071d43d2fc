"""One module per stage (cpt, sft, dpo), sharing the run skeleton in `common`."""
