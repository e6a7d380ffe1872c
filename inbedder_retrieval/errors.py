"""Errors raised by indexes and stores (all subclass ``InBedderError``)."""


class InBedderError(Exception):
    """Base class of the library's own errors."""


class IndexLockedError(InBedderError, TimeoutError):
    """Another writer holds the index."""


class CorruptIndexError(InBedderError):
    """An index file is truncated, corrupted or of an unknown format."""


class IncompatibleIndexError(InBedderError, ValueError):
    """The index was built with another model, pooling or dimension."""


class UnknownInstructionError(InBedderError, KeyError):
    """A search or removal names an instruction the index was not built with."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class UntrustedIndexError(InBedderError):
    """Opening the index would unpickle data from its folder, which can run code."""
