"""``hif featureset build|eval|list``: train a TopK SAE on the offline corpus and check its quality gates."""
