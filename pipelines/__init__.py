"""Micrometrics connector: the dlt source, the sync entry point and the local sandbox API."""
