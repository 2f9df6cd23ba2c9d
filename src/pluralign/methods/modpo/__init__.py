"""MODPO: DPO on one objective with a margin from the others, one model per weight vector."""
