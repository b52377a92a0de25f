"""Tools built on the estimator: choosing ``lam`` (:mod:`.selection`), baselines in the same
framework (:mod:`.baselines`), and data with a known sparsity pattern (:mod:`.simulate`)."""
