"""Marketo REST, Asset and Bulk API client. No Dagster imports: the Dagster layer wraps it in resources.py."""
