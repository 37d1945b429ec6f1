"""The dataset checks: read -> detect -> parse -> validate -> report (no web, no torch)."""
