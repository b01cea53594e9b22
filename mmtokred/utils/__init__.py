from .checkpoint import (CheckpointMismatch, allow_trusted_checkpoints, check_checkpoint_fits, load_into_runner,
                         load_trusted_checkpoint)
from .cli import InputError, run_cli
from .config import prepare_config

__all__ = ['CheckpointMismatch', 'InputError', 'allow_trusted_checkpoints', 'check_checkpoint_fits',
           'load_into_runner', 'load_trusted_checkpoint', 'prepare_config', 'run_cli']
