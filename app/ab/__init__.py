"""Blind A/B human evaluation: two models answer the same prompts; the team votes without labels."""
