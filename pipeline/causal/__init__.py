"""Causal evaluation from logged data: ATE by IPW, self-normalised IPW and doubly robust
estimators next to the naive difference, and the A/B analysis of a declared experiment."""

from pipeline.causal.estimators import Estimate, estimate_effects
from pipeline.causal.evaluate import CausalReport, causal_evaluation
from pipeline.causal.experiment import ABResult, ab_test

__all__ = ["ABResult", "CausalReport", "Estimate", "ab_test", "causal_evaluation", "estimate_effects"]
