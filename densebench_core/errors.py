"""The one exception that means "the user asked for something that cannot be": CLI exit code 2."""


class BadInput(Exception):
    """Bad input from the user. The CLI prints ``densebench: error: <message>`` and exits with code 2."""
