"""A declarative engine for studies that fine-tune language models in sequence and probe them."""

__version__ = "0.1.0"
