"""The one error type for problems the user can fix (params, input files, missing outputs of an earlier
stage): stages and the CLI print its message in one line and exit 1. Any other exception is a bug and
keeps its traceback."""


class UserError(ValueError):
    pass


class PretrainedUnavailable(UserError):
    """Pretrained weights that cannot be had here (no network): the message says where to put them."""
