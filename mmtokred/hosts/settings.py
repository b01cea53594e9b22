"""The reduction settings of a config, checked before anything is built, by the validator the model itself uses
(:meth:`Host.plan_cfg`, which returns the frozen plan): ``model.backbone`` and every ``TokenReductionHook`` in
``custom_hooks``. Errors are one-line :class:`~mmtokred.utils.InputError` naming the config key."""
import copy
import inspect
import os.path as osp
from typing import Optional

from ..reducers import REDUCERS, build_reducer
from ..utils.cli import InputError, check_file, message
from ..utils.config_checks import check_option_keys, did_you_mean, follow_data_root
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


def _init_params(cls) -> Optional[set]:
    """Names ``cls(...)`` accepts (its ``__init__`` and, through ``**kwargs``, its bases'), or None when a
    ``**kwargs`` reaches ``object`` (anything is accepted)."""
    names = set()
    for klass in cls.__mro__:
        if klass is object:
            return None
        if '__init__' not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {'self'}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


def _model_class(type_name, scope: str):
    """The class a config ``type`` names in ``scope``'s model registry, or None (the reduced hosts are registered
    by ``import mmtokred``, which every caller has done)."""
    if not isinstance(type_name, str):
        return type_name if inspect.isclass(type_name) else None
    import importlib

    from mmengine.registry import init_default_scope
    try:
        init_default_scope(scope)
        registry = importlib.import_module(f'{scope}.registry').MODELS
        return registry.get(type_name)
    except Exception:  # noqa: BLE001 - unknown scope / type: the build reports it
        return None


def check_backbone_cfg(cfg) -> None:
    """The backbone type takes a reducer when one is set; the backbone and reducer options exist."""
    backbone = (cfg.get('model') or {}).get('backbone')
    if not backbone or not backbone.get('type'):
        return
    kind = backbone['type']
    name = str(getattr(kind, '__name__', kind)).split('.')[-1]
    host = host_for_type(kind)
    cls = _model_class(kind, cfg.get('default_scope') or 'mmseg')
    accepted = _init_params(cls) if cls is not None else None
    if backbone.get('reducer') is not None:
        if host is not None and name not in host.reduced_types:
            raise InputError(f'model.backbone.type: {name} takes no reducer; set model.backbone.type='
                             f'{host.reduced_types[0]} (same state dict, the official checkpoint loads unchanged)')
        if host is None and accepted is not None and 'reducer' not in accepted:
            raise InputError(f'model.backbone.reducer: a {name} backbone takes no reduction; supported backbones: '
                             f'{supported_hosts()}')
        reducer = backbone['reducer']
        reducer_cls = REDUCERS.get(reducer.get('type')) if hasattr(reducer, 'get') else None
        reducer_options = _init_params(reducer_cls) if reducer_cls is not None else None
        if reducer_options is not None:
            unknown = sorted(set(reducer) - reducer_options - {'type'})
            if unknown:
                kind_name = reducer['type']
                raise InputError(
                    f'model.backbone.reducer: {kind_name} takes no {", ".join(map(repr, unknown))} '
                    f'(its options: {", ".join(sorted(reducer_options))}). Replacing a config\'s reducer with '
                    f'another type keeps the old keys unless the new dict has _delete_=True: in a config reducer=dict('
                    f"_delete_=True, type='{kind_name}', ...), on the command line --cfg-options "
                    f'model.backbone.reducer="dict(_delete_=True,type={kind_name},...)"')
    if accepted is not None:
        for key in backbone:
            if key not in accepted and key not in ('type', '_scope_'):
                raise InputError(f'model.backbone.{key}: {name} takes no {key!r}{did_you_mean(key, accepted)}')


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
