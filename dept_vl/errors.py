"""Errors a user can cause. The CLI turns these into one clear line and a non-zero exit."""


class DeptVLError(Exception):
    """Base class for user-facing errors (bad config, bad checkpoint, bad input)."""


class ConfigError(DeptVLError, ValueError):
    """An invalid configuration value or an unknown name."""


class CheckpointError(DeptVLError, ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


class InputError(DeptVLError, ValueError):
    """Input data (image, text, tensor) that cannot be used as given."""


class OutputError(DeptVLError):
    """A place to write that cannot be used as asked: a run directory that holds another run or is in use, a path
    that is a file, a directory that is not writable."""


class TrainingError(DeptVLError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


class TrainingInterrupted(DeptVLError):
    """SIGINT / SIGTERM during training: a checkpoint was saved; the message says how to resume."""
