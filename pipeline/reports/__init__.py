"""Shared pieces of the human-readable reports: number formatting and Prefect artifact publishing."""
