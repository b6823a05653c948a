"""``bedside train``, ``bedside convert`` and ``bedside eval``."""
