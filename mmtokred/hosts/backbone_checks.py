"""Backbone and reducer options that the classes do not take, found before anything is built (mmengine reports
them after building the model, ~300 lines into the log); each is one :class:`~mmtokred.utils.cli.InputError` line
that names the problem and the fix:

* a reducer on a backbone type that takes none (``VisionTransformer`` instead of ``ReducedVisionTransformer``);
* reducer options that the reducer type does not take (mmengine merges an overriding ``reducer=dict(type=...)``
  into the config's own dict: a new type keeps the old type's keys unless ``_delete_=True``);
* a backbone option the backbone class does not take (``reduce_after_layr``).
"""
import difflib
import inspect
from typing import Iterable, Optional

from ..utils.cli import InputError


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.7)
    return f' (did you mean {close[0]!r}?)' if close else ''


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
    """The class a config ``type`` names in ``scope``'s model registry, or None."""
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
    from ..reducers import REDUCERS
    from .registry import host_for_type, supported_hosts
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
                raise InputError(f'model.backbone.{key}: {name} takes no {key!r}{_did_you_mean(key, accepted)}')
