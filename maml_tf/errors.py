"""The one exception type users see: a clear message naming the flag, file or folder at fault."""


class MamlError(Exception):
    """Bad input (flags, data, checkpoints, fixtures). Entry points print it without a traceback."""
