"""Evaluations of fine-tuned runs: automatic metrics (base vs fine-tuned) and LLM-judge scores."""
