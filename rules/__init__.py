"""Rules: the rule model, the rule-file loader and the pure engine."""
