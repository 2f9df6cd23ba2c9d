"""The image world: captioned shapes on textures and a tiny text-to-image model pretrained on them."""
