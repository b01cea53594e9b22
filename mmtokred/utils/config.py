"""Config loading shared by tools/test.py and tools/train.py (the upstream tools' rules)."""
import os.path as osp


def prepare_config(config: str, cfg_options=None, launcher: str = 'none', work_dir=None):
    """Load ``config``, apply ``--cfg-options`` and the launcher, check the reduction settings (one-line
    :class:`~mmtokred.utils.cli.InputError`), and set the work dir: the given one, else the config's own, else
    ``./work_dirs/<config name>``."""
    from .cli import load_checked_config
    cfg = load_checked_config(config, cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg
