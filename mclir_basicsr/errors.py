"""The base of the add-on's errors that a user can fix (an option, a file, a setting).

Every such error is a :class:`MCLIRError` (and, for ``except`` clauses written against the standard types, also
a ``ValueError``, ``FileNotFoundError`` or ``RuntimeError`` as before). Its message is one line that starts with
what to fix (an option path such as ``train.negatives.decay[1]``, or a file). The start-up hook prints such an
error as that one line, without a traceback, and exits with status 1 (``MCLIR_BASICSR_TRACEBACK=1`` shows the
traceback). This module imports nothing.
"""


class MCLIRError(Exception):
    """A mistake the user can fix; the message is one line naming the option or file and what was expected."""
