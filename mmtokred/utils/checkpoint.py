"""Checkpoint loading for trusted files on torch >= 2.6, strict by default in every tool.

torch >= 2.6 defaults ``torch.load(weights_only=True)``; mmengine 0.10.x does not pass the flag, so full mmseg
checkpoints (which pickle numpy values and message-hub objects in their meta) fail to load. Our tools call
:func:`allow_trusted_checkpoints` once: it sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for this process only. Only
load checkpoints you trust (a pickle can run code).

Wrapped models keep the upstream state dict, so a checkpoint must fit the model exactly: any missing, unexpected
or differently shaped key is reported as one line (:func:`state_dict_mismatch`) instead of mmengine's warning,
which lets a wrong checkpoint evaluate to mIoU 0.
"""
import os
import re
from typing import Mapping, Optional

MODULE_PREFIX = re.compile(r'^module\.')   # DataParallel / DDP checkpoints, stripped as mmengine does


def allow_trusted_checkpoints():
    os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')


class CheckpointMismatch(RuntimeError):
    """The checkpoint does not fit the model (strict loading)."""


def _examples(keys, most=3):
    keys = sorted(keys)
    more = f', ... ({len(keys) - most} more)' if len(keys) > most else ''
    return ', '.join(keys[:most]) + more


def state_dict_mismatch(model_state: Mapping, ckpt_state: Mapping) -> Optional[str]:
    """One line describing how ``ckpt_state`` differs from ``model_state`` (shape mismatches, missing and
    unexpected keys, a few examples each), or None when they fit."""
    ckpt_state = {MODULE_PREFIX.sub('', k): v for k, v in ckpt_state.items()}
    shapes = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(model_state[k].shape)}'
              for k, v in ckpt_state.items()
              if k in model_state and hasattr(v, 'shape') and tuple(v.shape) != tuple(model_state[k].shape)]
    missing = set(model_state) - set(ckpt_state)
    unexpected = set(ckpt_state) - set(model_state)
    parts = []
    if shapes:
        parts.append(f'{len(shapes)} shape mismatch{"es" if len(shapes) > 1 else ""} ({_examples(shapes)})')
    if missing:
        parts.append(f'{len(missing)} missing key{"s" if len(missing) > 1 else ""} ({_examples(missing)})')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected key{"s" if len(unexpected) > 1 else ""} '
                     f'({_examples(unexpected)})')
    return '; '.join(parts) or None


def checkpoint_state_dict(ckpt):
    return ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt


RELAX_IN_PYTHON = 'strict=False loads the matching weights anyway'


def check_checkpoint_fits(model, ckpt, filename: str = 'the checkpoint', remedy: str = RELAX_IN_PYTHON):
    """Raise :class:`CheckpointMismatch` (one line) unless ``ckpt`` (a loaded checkpoint dict or state dict) fits
    ``model`` exactly. ``remedy`` ends the message: what the caller can do."""
    problem = state_dict_mismatch(model.state_dict(), checkpoint_state_dict(ckpt))
    if problem:
        raise CheckpointMismatch(f'{filename} does not fit this model: {problem}. Is it the checkpoint of '
                                 f'another model or dataset? ({remedy})')


def load_trusted_checkpoint(model, filename, map_location='cpu', strict=True, remedy: str = RELAX_IN_PYTHON):
    """Load a trusted checkpoint into ``model`` (strict by default: any missing, unexpected or mismatched key is a
    one-line :class:`CheckpointMismatch` ending with ``remedy``). ``filename`` is a local file or any scheme of
    mmengine's ``CheckpointLoader`` (e.g. mmtokred's ``dinov2://HEAD.pth``). Returns the checkpoint dict."""
    import os.path as osp

    import torch
    if osp.isfile(filename):
        ckpt = torch.load(filename, map_location=map_location, weights_only=False)
    else:
        from mmengine.runner import CheckpointLoader
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    if strict:
        check_checkpoint_fits(model, ckpt, filename, remedy)
    state = {MODULE_PREFIX.sub('', k): v for k, v in checkpoint_state_dict(ckpt).items()}
    if not strict:   # the fitting weights only (torch refuses shape mismatches even when not strict)
        own = model.state_dict()
        state = {k: v for k, v in state.items() if k not in own or tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(state, strict=strict)
    return ckpt


def load_into_runner(runner, filename: str, strict: bool = True,
                     remedy: str = '--no-strict loads the matching weights anyway'):
    """Load ``filename`` into an mmengine Runner's model now (before the test loop builds its dataloader), strictly
    unless ``strict=False`` (then mmengine's partial loading with its warning). The runner then skips its own
    ``load_from``."""
    from mmengine.hooks import Hook
    from mmengine.model import BaseTTAModel, is_model_wrapper

    model = runner.model
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module

    class StrictCheck(Hook):
        def after_load_checkpoint(self, runner, checkpoint):   # called before the weights are copied
            check_checkpoint_fits(model, checkpoint, filename, remedy)

    if strict:
        runner.register_hook(StrictCheck(), 'HIGHEST')
    runner.load_checkpoint(filename)
    return runner


PICKLE_PROTOCOL_2 = b'\x80\x02'     # torch's legacy (pre-zip) format starts with a protocol-2 pickle


def check_checkpoint_readable(path: str) -> None:
    """A cheap look at a local checkpoint before anything is built: a torch zip archive (with its ``data.pkl``) or a
    legacy torch pickle. Anything else (a truncated download, an HTML error page, an image) is a one-line
    :class:`~mmtokred.utils.cli.InputError` naming the file, instead of ``UnpicklingError: invalid load key`` after
    the model and the dataset were built."""
    import os.path as osp
    import zipfile

    from .cli import InputError
    if '://' in str(path) or not osp.isfile(path):
        return
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                if any(name.endswith('data.pkl') for name in archive.namelist()):
                    return
        except (zipfile.BadZipFile, OSError):
            pass
    else:
        with open(path, 'rb') as f:
            if f.read(2) == PICKLE_PROTOCOL_2:
                return
    raise InputError(f'checkpoint {path} is not a readable PyTorch checkpoint (neither a torch zip archive nor a '
                     'torch pickle: an incomplete download or another kind of file?); download it again or pass '
                     'the .pth file')
