"""The reduction settings of a config, checked before anything is built, by the validator the model itself uses
(:meth:`Host.plan_cfg`, which returns the frozen plan): ``model.backbone`` and every ``TokenReductionHook`` in
``custom_hooks``. Errors are one-line :class:`~mmtokred.utils.InputError` naming the config key."""
import copy
import os.path as osp
from typing import Optional

from ..reducers import build_reducer
from ..utils.cli import InputError, check_file, message
from ..utils.config_checks import check_option_keys, follow_data_root
from .backbone_checks import check_backbone_cfg
from .registry import SETTINGS, host_for_type, supported_hosts

HEAD_RESTORING_SEGMENTORS = ('TokenReductionEncoderDecoder',)


def _plain(value):
    return value.to_dict() if hasattr(value, 'to_dict') else value


def _plan(where: str, backbone: dict, **settings):
    """Check the settings with the backbone host's own validator (no model is built)."""
    host = host_for_type(backbone.get('type'))
    settings = {k: _plain(v) for k, v in settings.items()}
    try:
        if host is not None:
            return host.plan_cfg(backbone, **settings)
        build_reducer(settings.get('reducer'))  # not a host (the model will say so when built): the reducer now
    except (ValueError, TypeError, KeyError) as e:
        raise InputError(f'{where}: {message(e)}') from e


def check_reduction_settings(cfg) -> None:
    """Validate the reduction settings of ``cfg.model.backbone`` and of any ``TokenReductionHook`` in
    ``cfg.custom_hooks`` with the validators the model uses, without building anything. Raises InputError naming
    the config key."""
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or {}
    host = host_for_type(backbone.get('type'))
    if backbone.get('reducer') is not None:
        options = host.options if host is not None else ()
        settings = {k: backbone.get(k) for k in SETTINGS + options if k in backbone}
        _plan('model.backbone', backbone, **settings)
        if backbone.get('restore_site', 'backbone') == 'head' and model.get('type') not in HEAD_RESTORING_SEGMENTORS:
            raise InputError(f"model.type: restore_site='head' needs a segmentor that restores the head output "
                             f"({', '.join(HEAD_RESTORING_SEGMENTORS)}), got {model.get('type')!r}")
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if hook.get('type') != 'TokenReductionHook':
            continue
        where = f'custom_hooks[{i}] (TokenReductionHook)'
        kwargs = {k: v for k, v in hook.items() if k not in ('type', 'priority')}
        if 'reducer' not in kwargs or 'reduce_after_layer' not in kwargs:
            raise InputError(f'{where} needs reducer=dict(type=...) and reduce_after_layer, got {sorted(kwargs)}')
        valid = host.valid_arguments() if host is not None else SETTINGS
        unknown = set(kwargs) - set(valid)
        if unknown:
            raise InputError(f'{where}: unknown arguments {sorted(unknown)}; valid: {", ".join(valid)}')
        if host is None:
            raise InputError(f'{where}: supported backbones: {supported_hosts()}; '
                             f"got model.backbone.type={backbone.get('type')!r}")
        _plan(where, backbone, **kwargs)


def load_checked_config(config: str, cfg_options: Optional[dict] = None):
    """``Config.fromfile`` + ``--cfg-options``, after checking that the file exists, then the reduction settings
    (:func:`check_reduction_settings`)."""
    from mmengine.config import Config
    check_file(config, 'config file')
    cfg = Config.fromfile(config)
    if cfg_options:
        check_option_keys(cfg, cfg_options)
        original = copy.deepcopy(cfg)
        cfg.merge_from_dict(cfg_options)
        follow_data_root(cfg, original)
    check_backbone_cfg(cfg)
    check_reduction_settings(cfg)
    return cfg


def prepare_config(config: str, cfg_options=None, launcher: str = 'none', work_dir=None):
    """Config loading shared by tools/test.py and tools/train.py (the upstream tools' rules): load ``config``, apply
    ``--cfg-options`` and the launcher, check the reduction settings (one-line InputError), and set the work dir:
    the given one, else the config's own, else ``./work_dirs/<config name>``."""
    cfg = load_checked_config(config, cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg
