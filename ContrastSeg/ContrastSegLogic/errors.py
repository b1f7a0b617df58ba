"""The one error the module shows to the user as a single line: what is wrong with which node or file, and the fix."""


class SceneInputError(ValueError):
    """A node, file or setting that cannot be used; the message names it and says what to do."""


class JobFailedError(RuntimeError):
    """A background job ended with an error (its message is the job's own one-line error)."""


def checked_config(config):
    """A library config after its own ``check()``; its one-line error becomes the module's."""
    library_checked(config.check)
    return config


def library_checked(check):
    """``check()``'s result; a library check's one-line error becomes the module's."""
    from ContrastSegLib.errors import ContrastSegError
    try:
        return check()
    except ContrastSegError as error:
        raise SceneInputError(str(error)) from None
