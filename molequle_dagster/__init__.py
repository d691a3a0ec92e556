"""Molequle's Marketo sync as a Dagster project. Definitions live in `molequle_dagster.definitions`."""
