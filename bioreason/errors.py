"""Error classes of bioreason, one place for all of them.

Every error subclasses both :class:`BioreasonError` (so a front end can catch
"anything this library meant to say" and print it without a traceback) and the
builtin it resembles (so callers that catch ``ValueError`` or
``FileNotFoundError`` keep working). Messages follow the house rule: name the
value, the place (file:line or chrom:pos), and the fix.
"""

from __future__ import annotations


class BioreasonError(Exception):
    """Base class: a problem with the user's input or set-up, with a message meant for people."""


class EmptyInputError(BioreasonError, ValueError):
    """A required input (question, file, field) is empty."""


class InvalidSequenceError(BioreasonError, ValueError):
    """A DNA sequence is empty or holds a character that is not a nucleotide code."""


class SequenceTooLongError(BioreasonError, ValueError):
    """A DNA sequence is longer than the encoder accepts and tiling was not asked for."""


class PlaceholderCountError(BioreasonError, ValueError):
    """The number of DNA placeholder tokens differs from the number of projected DNA features."""


class TruncationError(BioreasonError, ValueError):
    """Text truncation would cut a DNA block or the whole answer."""


class ModelNotPreparedError(BioreasonError, FileNotFoundError):
    """The embedded default model has not been built yet."""


class CorruptModelError(BioreasonError, FileNotFoundError):
    """A model folder exists but lacks a file or holds unreadable weights."""


class UnknownEncoderError(BioreasonError, KeyError):
    """An encoder name that is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(BioreasonError, ImportError):
    """An optional package is needed for this feature; the message says how to install it."""


class InputFormatError(BioreasonError, ValueError):
    """A VCF, FASTA or dataset file is malformed; the message names file and line."""


class ReferenceMismatchError(BioreasonError, ValueError):
    """A VCF REF allele disagrees with the reference FASTA."""


class ReferenceFastaError(BioreasonError, FileNotFoundError):
    """The reference FASTA cannot be opened or indexed (plain gzip, read-only folder, ...)."""


class DatasetValidationError(BioreasonError, ValueError):
    """A row of a user dataset is missing a column or holds a bad value; names row and column."""


class OutputExistsError(BioreasonError, FileExistsError):
    """An output file exists and --force was not given."""


class RecipeError(BioreasonError, ValueError):
    """A training recipe or override is malformed or names an unknown key."""
