"""Recommendation building blocks: training examples, ranking metrics, baselines, retrieval models.

Everything here works on dense user/item indices and scipy.sparse CSR matrices, so
that a model, a baseline and the evaluator agree on what "item 17" and "seen" mean.
"""
