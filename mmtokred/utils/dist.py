"""Multi-process evaluation on CPU-only machines as well as on GPUs (``tools/dist_test.sh``, ``torchrun ...
--launcher pytorch``).

mmengine's ``pytorch`` launcher always calls ``torch.cuda.set_device`` and wraps the model in DDP with
``device_ids=[LOCAL_RANK]``: both fail without a GPU ("Found no NVIDIA driver"), whatever ``dist_cfg.backend`` says.
Without CUDA, :func:`setup_launcher` starts the process group itself with gloo (the Runner then skips its own
``init_dist``) and asks for a device-less DDP wrapper (``device_ids=None``); with CUDA it changes nothing (nccl,
``set_device``, ``device_ids=[LOCAL_RANK]``, as upstream). The metrics are those of one process: the evaluators
gather every rank's results before computing them.
"""
import os

from .cli import InputError

TORCHRUN_VARIABLES = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def check_launcher_env(launcher: str) -> None:
    """``--launcher pytorch`` needs the variables torchrun sets; without them mmengine stops with ``KeyError:
    'RANK'``."""
    if launcher != 'pytorch':
        return
    missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
    if missing:
        raise InputError(f'--launcher pytorch needs the processes started by torchrun ({", ".join(missing)} not '
                         'set): run tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES, or torchrun '
                         '--nproc_per_node N tools/test.py CONFIG CHECKPOINT --launcher pytorch (or --launcher none '
                         'for one process)')


def setup_launcher(cfg, launcher: str) -> str:
    """Prepare ``cfg`` (an mmengine Config about to build a Runner) for ``launcher``. Returns the process-group
    backend that will be used ('' for one process).

    ``pytorch`` without CUDA: the process group is started here with gloo and the model wrapper gets
    ``device_ids=None``; with CUDA the config's ``env_cfg.dist_cfg`` (nccl by default) is left to mmengine.
    """
    import torch
    import torch.distributed as torch_dist

    check_launcher_env(launcher)
    if launcher == 'none':
        return ''
    if launcher != 'pytorch' or torch.cuda.is_available():
        return ((cfg.get('env_cfg') or {}).get('dist_cfg') or {}).get('backend', 'nccl')
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None       # a CPU module: DDP must not be given a device
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper
    if not torch_dist.is_initialized():
        # the Runner then finds an initialised group and skips mmengine's init_dist (which calls set_device)
        dist_cfg = dict(((cfg.get('env_cfg') or {}).get('dist_cfg')) or {})
        dist_cfg.pop('backend', None)
        timeout = dist_cfg.pop('timeout', None)
        if timeout is not None:
            from datetime import timedelta
            dist_cfg['timeout'] = timedelta(seconds=timeout)
        torch_dist.init_process_group(backend='gloo', **dist_cfg)
    return 'gloo'


def is_main_process() -> bool:
    """Rank 0, or no process group at all."""
    import torch.distributed as torch_dist
    return not torch_dist.is_available() or not torch_dist.is_initialized() or torch_dist.get_rank() == 0
