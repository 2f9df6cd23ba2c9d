"""`pluralign train reward-model --type btl|npbtl|multihead`: dispatches to the type's trainer."""
