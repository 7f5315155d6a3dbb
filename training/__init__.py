"""Thin training entry points (``sft.py``, ``grpo.py``) and YAML recipes (``recipes/``); the loop itself is
``bioreason.trainer``."""
