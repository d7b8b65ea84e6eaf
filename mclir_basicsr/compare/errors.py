"""The comparison tool's one error type."""
from mclir_basicsr.errors import MCLIRError


class CompareError(MCLIRError, RuntimeError):
    """A run failed or the option files cannot be compared; the message says which and why."""
