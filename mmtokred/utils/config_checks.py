"""Config mistakes that mmengine would only report after building the model (or never), found before anything is
built; each is one :class:`~mmtokred.utils.cli.InputError` line that names the problem and the fix.

* a ``--cfg-options`` key whose top-level name is neither in the config nor read by the Runner but close to one
  that is (a typo such as ``test_dataloder...``, which mmengine silently adds and nothing reads);
* a reducer on a backbone type that takes none (``VisionTransformer`` instead of ``ReducedVisionTransformer``);
* reducer options that the reducer type does not take (mmengine merges an overriding ``reducer=dict(type=...)``
  into the config's own dict: a new type keeps the old type's keys unless ``_delete_=True``);
* a backbone option the backbone class does not take (``reduce_after_layr``).

:func:`follow_data_root` moves the evaluators' annotation paths along with an overridden dataset ``data_root``.
"""
import difflib
import inspect
from typing import Iterable, Optional, Sequence

from .cli import InputError

# top-level keys that Runner.from_cfg / our tools read although no config needs to define them
RUNNER_EXTRA_KEYS = ('custom_imports', 'runner_type', 'model_wrapper_cfg', 'find_unused_parameters', 'compile',
                     'log_level', 'tta_model', 'tta_pipeline', 'sync_bn', 'work_dir', 'load_from', 'resume',
                     'launcher', 'randomness', 'experiment_name', 'cfg', 'val_evaluator', 'test_evaluator')


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.7)
    return f' (did you mean {close[0]!r}?)' if close else ''


def runner_keys() -> set:
    from mmengine.runner import Runner
    return set(inspect.signature(Runner.__init__).parameters) - {'self'} | set(RUNNER_EXTRA_KEYS)


def check_option_keys(cfg, cfg_options: Optional[dict]) -> None:
    """A ``--cfg-options`` key whose top-level name is not in ``cfg`` (before the options are merged) nor read by
    the Runner, but close to one that is, is a typo: mmengine would add it silently and nothing would read it. (A
    new name unlike any key is allowed: our own tools read optional keys, e.g. ``compensator`` of the classifier
    configs.)"""
    if not cfg_options:
        return
    known = set(cfg.keys()) | runner_keys()
    for key in cfg_options:
        top = str(key).split('.')[0]
        if top in known:
            continue
        close = difflib.get_close_matches(top, list(known), n=1, cutoff=0.8)
        if close:
            raise InputError(f'--cfg-options {key}: the config has no {top!r} (did you mean {close[0]!r}?); a '
                             'misspelt key is silently ignored (the config\'s keys: --verbose shows the config)')


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

    import mmtokred  # noqa: F401  (registers the reduced hosts)
    from mmengine.registry import init_default_scope
    try:
        init_default_scope(scope)
        registry = importlib.import_module(f'{scope}.registry').MODELS
        return registry.get(type_name)
    except Exception:  # noqa: BLE001 - unknown scope / type: the build reports it
        return None


def check_backbone_cfg(cfg) -> None:
    """The backbone type takes a reducer when one is set; the backbone and reducer options exist."""
    from ..hosts import host_for_type
    from ..hosts.registry import supported_hosts
    from ..reducers import REDUCERS
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


# ----------------------------------------------------------------------------------------------------------------
# data_root overrides
# ----------------------------------------------------------------------------------------------------------------
EVALUATOR_PATH_KEYS = ('ann_file', 'seg_prefix', 'outfile_prefix')


def _dataset_roots(cfg, loaders: Sequence[str]):
    roots = {}
    for loader in loaders:
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        while dataset.get('dataset') is not None:       # RepeatDataset & co
            dataset = dataset['dataset']
        if isinstance(dataset.get('data_root'), str):
            roots[loader] = dataset['data_root']
    return roots


def follow_data_root(cfg, old_cfg) -> None:
    """When ``--cfg-options`` changed a test / val dataset's ``data_root``, the evaluator paths that pointed
    inside the old root (mmdet's ``ann_file``, ``seg_prefix``: the evaluators read the annotations themselves)
    move to the new root."""
    pairs = (('test_dataloader', 'test_evaluator'), ('val_dataloader', 'val_evaluator'))
    old_roots = _dataset_roots(old_cfg, [p[0] for p in pairs])
    new_roots = _dataset_roots(cfg, [p[0] for p in pairs])
    for loader, evaluator_key in pairs:
        old, new = old_roots.get(loader), new_roots.get(loader)
        if not old or not new or old == new or cfg.get(evaluator_key) is None:
            continue
        if old_cfg.get(evaluator_key) != cfg.get(evaluator_key):
            continue    # the user set the evaluator paths as well
        evaluators = cfg[evaluator_key] if isinstance(cfg[evaluator_key], list) else [cfg[evaluator_key]]
        old_prefix = old.rstrip('/') + '/'
        for evaluator in evaluators:
            for key in EVALUATOR_PATH_KEYS:
                value = evaluator.get(key)
                if isinstance(value, str) and value.startswith(old_prefix):
                    evaluator[key] = new.rstrip('/') + '/' + value[len(old_prefix):]


# ----------------------------------------------------------------------------------------------------------------
# image files
# ----------------------------------------------------------------------------------------------------------------
IMAGE_SIGNATURES = {          # extension -> accepted leading bytes (any of)
    '.jpg': (b'\xff\xd8\xff',), '.jpeg': (b'\xff\xd8\xff',), '.png': (b'\x89PNG\r\n\x1a\n',),
    '.bmp': (b'BM',), '.tif': (b'II*\x00', b'MM\x00*'), '.tiff': (b'II*\x00', b'MM\x00*'),
    '.webp': (b'RIFF',), '.gif': (b'GIF87a', b'GIF89a'),
}


def check_image_files(cfg, loaders: Sequence[str] = ('test_dataloader',)) -> None:
    """Every file with an image extension in the image folder (``data_prefix.img_path`` / ``img``) of the given
    dataloaders' datasets starts like an image of that kind (a few bytes per file, read before the long run), so a
    text file or an HTML page saved as ``.jpg`` is reported now rather than after the other images were
    evaluated. Files without an image extension are left alone (the datasets skip them)."""
    import os
    import os.path as osp

    from .cli import IMAGE_PREFIX_KEYS, _dataset_cfgs, _is_remote
    for loader in loaders:
        for where, ds in _dataset_cfgs((cfg.get(loader) or {}).get('dataset'), f'{loader}.dataset'):
            prefix = ds.get('data_prefix') or {}
            key = next((k for k in IMAGE_PREFIX_KEYS if k in prefix), None)
            if key is None:
                continue
            folder = osp.join(ds.get('data_root') or '', prefix[key] or '')
            if not folder or _is_remote(folder) or not osp.isdir(folder):
                continue
            for dirpath, _, files in os.walk(folder):
                for name in sorted(files):
                    signatures = IMAGE_SIGNATURES.get(osp.splitext(name)[1].lower())
                    if signatures is None:
                        continue
                    path = osp.join(dirpath, name)
                    with open(path, 'rb') as f:
                        head = f.read(16)
                    if not any(head.startswith(s) for s in signatures):
                        raise InputError(f'{where}: {path} is not a {osp.splitext(name)[1]} image (it does not '
                                         'start like one); remove it from the image folder or replace it')
