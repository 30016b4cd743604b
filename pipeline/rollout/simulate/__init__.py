"""`keel simulate`: drive the real service through a whole rollout with synthetic traffic on a virtual clock.

See docs/adr/0016-rollout-evaluation-and-simulation.md.
"""
