"""``_base_ = 'mmtokred::segmenter_vitl_tokenadapter_ade.py'``: our configs as bases of a user's config, as
``'mmseg::...'`` works for mmsegmentation's.

OpenMMLab packages ship their configs inside the package (``PACKAGE/.mim/configs``, copied there when the wheel
is built; setup.py does the same for mmtokred). mmengine resolves ``PACKAGE::PATH`` only for the packages of its
fixed table (``MODULE2PACKAGE``) and only for paths with a sub-folder; ``import mmtokred`` therefore wraps
``Config._get_cfg_path`` (the one function that resolves a base path) so that ``mmtokred::PATH`` is read from
:func:`configs_dir`, and leaves every other path to mmengine. The base is read like a local relative base (no
``_scope_`` is imposed): our configs set their own ``default_scope`` through their upstream bases.
"""
import os.path as osp

PREFIX = 'mmtokred::'
PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def configs_dir() -> str:
    """The ``configs/`` folder of a clone (next to setup.py: the files being edited), else the installed copy,
    ``mmtokred/.mim/configs``."""
    root = osp.dirname(PACKAGE_DIR)
    if osp.isfile(osp.join(root, 'setup.py')) and osp.isdir(osp.join(root, 'configs')):
        return osp.join(root, 'configs')
    return osp.join(PACKAGE_DIR, '.mim', 'configs')


def config_path(name: str) -> str:
    """The file of ``mmtokred::NAME`` (``NAME`` relative to the configs folder, e.g. 'tiny/segmenter_tiny_ade.py').
    Raises FileNotFoundError naming the folder searched."""
    path = osp.join(configs_dir(), name[len(PREFIX):] if name.startswith(PREFIX) else name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{PREFIX}{name[len(PREFIX):] if name.startswith(PREFIX) else name}: no such config '
                                f'in {configs_dir()}')
    return path


def register_config_scheme() -> None:
    """Make ``mmtokred::PATH`` resolvable as a config base (idempotent)."""
    from mmengine.config import Config
    original = Config._get_cfg_path
    if getattr(original, 'resolves_mmtokred', False):
        return

    def _get_cfg_path(cfg_path, filename):
        if isinstance(cfg_path, str) and cfg_path.startswith(PREFIX):
            return config_path(cfg_path), None
        return original(cfg_path, filename)

    _get_cfg_path.resolves_mmtokred = True
    Config._get_cfg_path = staticmethod(_get_cfg_path)
