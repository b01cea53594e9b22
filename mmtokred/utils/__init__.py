"""Leaf utilities (no mmtokred imports): one-line errors and argument helpers for the tools, trusted checkpoint
loading, warnings, the registry mechanism, a progress bar."""
from .checkpoint import (
                         CheckpointMismatch,
                         allow_trusted_checkpoints,
                         check_checkpoint_fits,
                         load_into_runner,
                         load_trusted_checkpoint,
)
from .cli import InputError, run_cli

__all__ = ['CheckpointMismatch', 'InputError', 'allow_trusted_checkpoints', 'check_checkpoint_fits',
           'load_into_runner', 'load_trusted_checkpoint', 'run_cli']
