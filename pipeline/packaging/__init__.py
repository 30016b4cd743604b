"""Keel outside its checkout: project scaffolding (`keel init`), Bentos (`keel build`), pre-commit checks."""
