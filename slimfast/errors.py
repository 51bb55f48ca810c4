"""The one exception type users need to catch."""


class SlimfastError(Exception):
    """Any failure caused by input data, files or arguments (bad image, corrupt stream, ...).

    Its message is one line, written for the person who ran the command.
    """
