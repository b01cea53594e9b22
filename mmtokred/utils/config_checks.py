"""Config and data mistakes that mmengine would only report late (or never), found before anything is built; each
is one :class:`~mmtokred.utils.cli.InputError` line that names the problem and the fix:

* a ``--cfg-options`` key whose top-level name is neither in the config nor read by the Runner but close to one
  that is (a typo such as ``test_dataloder...``, which mmengine silently adds and nothing reads);
* a file with an image extension in the test image folder that is not an image.

:func:`follow_data_root` moves the evaluators' annotation paths along with an overridden dataset ``data_root``.
The backbone / reducer options: :mod:`mmtokred.hosts.backbone_checks`.
"""
import difflib
import inspect
from typing import Optional, Sequence

from .cli import InputError

# top-level keys that Runner.from_cfg / our tools read although no config needs to define them
RUNNER_EXTRA_KEYS = ('custom_imports', 'runner_type', 'model_wrapper_cfg', 'find_unused_parameters', 'compile',
                     'log_level', 'tta_model', 'tta_pipeline', 'sync_bn', 'work_dir', 'load_from', 'resume',
                     'launcher', 'randomness', 'experiment_name', 'cfg', 'val_evaluator', 'test_evaluator')


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
