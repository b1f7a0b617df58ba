"""The one error the module shows to the user as a single line: what is wrong with which node or file, and the fix."""


class SceneInputError(ValueError):
    """A node, file or setting that cannot be used; the message names it and says what to do."""


class JobFailedError(RuntimeError):
    """A background job ended with an error (its message is the job's own one-line error)."""
