"""User-facing errors: one line that names the thing and the fix. The CLI prints these
without a traceback; anything else is a bug and keeps its traceback."""


class WorldplayError(Exception):
    """A problem with the user's input or environment (bad flag, missing file, no display...)."""
