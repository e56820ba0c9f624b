"""zumik: how much of an LLM agent's input could be reused as prefix cache, how much was, and why not."""

__version__ = "0.1.0"
