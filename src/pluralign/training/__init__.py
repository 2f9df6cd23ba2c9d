"""Training mechanics shared by every method: shared arguments, progress lines, seeding, users' pair features, SFT, RL, DPO stages (process state and the manifest are in :mod:`pluralign.models`)."""
