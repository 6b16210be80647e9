"""Errors that say what is wrong, where, and how to fix it."""


class SpikevizError(Exception):
    """Base class of every error spikeviz raises on purpose."""


class DataError(SpikevizError, ValueError):
    """A data file or data directory is missing, corrupt, truncated or of the wrong shape."""


class ConfigError(SpikevizError, ValueError):
    """A setting is out of range or does not fit the data or the network."""
