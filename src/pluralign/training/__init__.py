"""Training mechanics shared by every method: process state, shared arguments, progress lines, seeding, the manifest, SFT, RL, DPO stages."""
