"""The one exception type of the library.

Every bad input raises :class:`ContrastSegError` with a message of one line that names the file (or node) and the
fix; the CLI prints it as ``contrastseg: error: <message>`` and exits with status 1.
"""


class ContrastSegError(Exception):
    """Bad input or an unusable environment; the message names the culprit and the fix."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
