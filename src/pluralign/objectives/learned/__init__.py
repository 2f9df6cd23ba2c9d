"""Reward models pluralign trains, as loaded scorers: one module per type (btl, npbtl, multihead, classifier,
ensemble), each with ``load(model_dir, manifest) -> scorer``. They sit below everything that scores with
them; their trainers sit above, in ``pluralign.reward_models.<type>``. No type imports another."""
