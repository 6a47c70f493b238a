"""The one base class for errors caused by the user's input (files, options, data), not by a bug."""


class UserError(Exception):
    """Bad input: the message names the file, section or option and what was expected."""
