"""The one exception type the command line turns into a one-line message."""


class ChimeraMixError(Exception):
    """Bad input or environment: the message says what is wrong and how to fix it.

    The CLI prints it as one line on stderr and exits with code 2 (no traceback
    unless --debug). Anything else that escapes is a bug and keeps its traceback.
    """

    exit_code = 2
