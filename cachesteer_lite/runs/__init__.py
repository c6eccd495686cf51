"""Runs: the evaluation runner and its methods (:mod:`runner`, :mod:`methods`, :mod:`config`), held-out selection
(:mod:`selection`), records on disk (:mod:`records`), provenance, the paper's numbers (:mod:`paper`), stored
results read back (:mod:`results`), statistics and the command line (:mod:`cli`)."""
