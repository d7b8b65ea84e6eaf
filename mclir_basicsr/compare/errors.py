"""The comparison tool's one error type."""


class CompareError(RuntimeError):
    """A run failed or the option files cannot be compared; the message says which and why."""
