"""Checkpoint loading for trusted files on torch >= 2.6.

torch >= 2.6 defaults ``torch.load(weights_only=True)``; mmengine 0.10.x does not pass the flag, so full mmseg
checkpoints (which pickle numpy values and message-hub objects in their meta) fail to load. Our tools call
:func:`allow_trusted_checkpoints` once: it sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for this process only. Only
load checkpoints you trust (a pickle can run code).
"""
import os


def allow_trusted_checkpoints():
    os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')


def load_trusted_checkpoint(model, filename, map_location='cpu', strict=True):
    """Load a trusted checkpoint into ``model`` (strict by default: any missing, unexpected or mismatched key is an
    error). ``filename`` is a local file or any scheme of mmengine's ``CheckpointLoader`` (e.g. mmtokred's
    ``dinov2://HEAD.pth``). Returns the checkpoint dict."""
    import os.path as osp

    import torch
    if osp.isfile(filename):
        ckpt = torch.load(filename, map_location=map_location, weights_only=False)
    else:
        from mmengine.runner import CheckpointLoader
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    model.load_state_dict(state, strict=strict)
    return ckpt
