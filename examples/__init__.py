"""Runnable tickbus examples: the trading pipeline (:mod:`examples.pipeline`) and its demo."""
