"""What every command-line tool shares: one-line errors (the traceback only with ``--debug``), checks of the
user's inputs before anything expensive starts, and argument types that name what is valid.

A tool's ``main(argv)`` raises as usual (tests and Python callers see the exception); its ``__main__`` block runs
``sys.exit(run_cli(main))``, which prints ``error: <message>`` on one line instead of a traceback.

The checks run in this order, each before anything is built: the config file, the checkpoint path, the reduction
settings of the config (by the validators the model itself uses, on a stand-in: nothing is built), the data
folders of the dataloaders that will be used.
"""
import argparse
import ast
import copy
import os
import os.path as osp
import sys
from typing import Callable, Iterator, Optional, Sequence, Tuple

from .checkpoint import CheckpointMismatch
from .warnings import silence_known_warnings

HEAD_RESTORING_SEGMENTORS = ('TokenReductionEncoderDecoder',)


class InputError(ValueError):
    """Bad user input (a path, a config setting, an argument); its message is one line naming what is wrong and
    what is valid."""


def add_debug_arg(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('--debug', action='store_true',
                        help='on an error, show the full traceback instead of one line')
    return parser


def message(error: BaseException) -> str:
    """The message of ``error`` on one line (a KeyError's without its quotes)."""
    msg = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return ' '.join(str(msg).split())


def one_line(error: BaseException) -> str:
    """``message(error)``, led by the exception type unless it is an input error (ours or a missing file)."""
    if isinstance(error, (InputError, FileNotFoundError, CheckpointMismatch)):
        return message(error)
    return f'{type(error).__name__}: {message(error)}'


def run_cli(main: Callable, argv: Optional[Sequence[str]] = None) -> int:
    """Run a tool's ``main(argv)`` with the known third-party warnings silenced; on an exception print one line
    (``--debug`` in argv: re-raise, so the traceback is shown). Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    silence_known_warnings()
    try:
        main(argv)
    except Exception as e:  # noqa: BLE001 - every error is reported; --debug shows the traceback
        if '--debug' in argv:
            raise
        print(f'error: {one_line(e)}  [--debug shows the traceback]', file=sys.stderr, flush=True)
        return 1
    return 0


# ----------------------------------------------------------------------------------------------------------------
# argument types
# ----------------------------------------------------------------------------------------------------------------
def parse_shape(values: Sequence[int], name: str = '--shape') -> Tuple[int, int]:
    """(H, W) from ``[S]`` (square) or ``[H, W]``; both positive integers."""
    values = list(values)
    if len(values) not in (1, 2):
        raise InputError(f'{name} takes H W or one number S (an S x S input), got {len(values)} numbers: '
                         f'{" ".join(map(str, values))}')
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise InputError(f'{name} values must be positive integers (pixels), got {" ".join(map(str, values))}')
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


class ShapeAction(argparse.Action):
    """``--shape H W`` or ``--shape S``, checked at parse time (argparse prints the usage and the reason)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, parse_shape(values, option_string or self.dest))
        except InputError as e:
            parser.error(str(e))


def add_shape_arg(parser: argparse.ArgumentParser, help_tail: str = 'default: the config test crop'):
    parser.add_argument('--shape', type=int, nargs='+', action=ShapeAction, metavar='H [W]',
                        help=f'input height and width, or one number for a square input ({help_tail})')


def _literal(node):
    """An ast node of a --cfg-options value -> Python value; bare names are strings (as mmengine reads them)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return {'True': True, 'False': False, 'None': None}.get(node.id, node.id)
    if isinstance(node, ast.Attribute):                     # mmseg.VisionTransformer
        return f'{_literal(node.value)}.{node.attr}'
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict' and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f'cannot read {ast.unparse(node)!r} (use numbers, words, [..], (..), dict(k=v) or {{k: v}})')


def parse_option_value(text: str):
    """A ``--cfg-options`` value that holds dicts (``[dict(type=TokenReductionHook, ...)]``), which mmengine's
    DictAction cannot read (it recurses until RecursionError). Bare words are strings, as in mmengine."""
    return _literal(ast.parse(text.strip().strip('\'"'), mode='eval').body)


def add_cfg_options_arg(parser: argparse.ArgumentParser, help_tail: str = ''):
    """``--cfg-options key=value ...``: mmengine's DictAction, plus values holding dicts."""
    from mmengine.config import DictAction

    class CfgOptionsAction(DictAction):
        def __call__(self, parser, namespace, values, option_string=None):
            plain, options = [], {}
            for kv in values or []:
                key, eq, val = kv.partition('=')
                if not eq or not key:
                    parser.error(f'--cfg-options takes KEY=VALUE pairs, got {kv!r} (e.g. {kv or "KEY"}=VALUE; '
                                 'quote values with spaces)')
                if 'dict(' not in val and '{' not in val:
                    plain.append(kv)
                    continue
                try:
                    options[key] = parse_option_value(val)
                except (SyntaxError, ValueError) as e:
                    parser.error(f'--cfg-options {key}: {e}')
            super().__call__(parser, namespace, plain, option_string)
            getattr(namespace, self.dest).update(options)

    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, metavar='KEY=VALUE',
                        help='override config settings, e.g. model.backbone.reducer.r_h=0.2 or '
                             'custom_hooks="[dict(type=TokenReductionHook,reducer=dict(type=ToMe,ratio=0.5),'
                             f'reduce_after_layer=5)]"{help_tail}')


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be an integer >= 1, got {value}')
    return value


def add_num_threads_arg(parser: argparse.ArgumentParser, help_text: Optional[str] = None):
    parser.add_argument('--num-threads', type=positive_int,
                        help=help_text or 'torch CPU threads for the timing (default: torch\'s own choice); on a '
                                          'shared machine use fewer threads than idle cores')


# ----------------------------------------------------------------------------------------------------------------
# early checks
# ----------------------------------------------------------------------------------------------------------------
def _is_remote(path: str) -> bool:
    return '://' in str(path)


def check_file(path: Optional[str], what: str) -> None:
    """``what`` names the argument, e.g. 'checkpoint'."""
    if not path or _is_remote(path):
        return
    if osp.isdir(path):
        raise InputError(f'{what} must be a file, got the folder {path}')
    if not osp.isfile(path):
        raise InputError(f'{what} not found: {path}')


def load_checked_config(config: str, cfg_options: Optional[dict] = None):
    """``Config.fromfile`` + ``--cfg-options``, after checking that the file exists, then the reduction settings
    (:func:`check_reduction_settings`)."""
    from mmengine.config import Config
    check_file(config, 'config file')
    from ..hosts.backbone_checks import check_backbone_cfg
    from .config_checks import check_option_keys, follow_data_root
    cfg = Config.fromfile(config)
    if cfg_options:
        check_option_keys(cfg, cfg_options)
        original = copy.deepcopy(cfg)
        cfg.merge_from_dict(cfg_options)
        follow_data_root(cfg, original)
    check_backbone_cfg(cfg)
    check_reduction_settings(cfg)
    return cfg


def _plain(value):
    return value.to_dict() if hasattr(value, 'to_dict') else value


def _validate(where: str, backbone: dict, reducer, **settings) -> None:
    """Check the settings with the backbone host's own validator (no model is built)."""
    from ..hosts import host_for_type
    from ..reducers import build_reducer
    host = host_for_type(backbone.get('type'))
    try:
        if host is not None:
            host.validate_cfg(backbone, _plain(reducer), **settings)
        else:   # not a host (the model will say so when built): the reducer's own settings now
            build_reducer(_plain(reducer))
    except (ValueError, TypeError, KeyError) as e:
        raise InputError(f'{where}: {message(e)}') from e


def check_reduction_settings(cfg) -> None:
    """Validate the reduction settings of ``cfg.model.backbone`` and of any ``TokenReductionHook`` in
    ``cfg.custom_hooks`` with the validators the model uses, without building anything. Raises InputError naming
    the config key."""
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or {}
    if backbone.get('reducer') is not None:
        site = backbone.get('restore_site', 'backbone')
        _validate('model.backbone', backbone, backbone.get('reducer'),
                  reduce_after_layer=_plain(backbone.get('reduce_after_layer')),
                  restore_after_layer=backbone.get('restore_after_layer'), restore_site=site)
        if site == 'head' and model.get('type') not in HEAD_RESTORING_SEGMENTORS:
            raise InputError(f"model.type: restore_site='head' needs a segmentor that restores the head output "
                             f"({', '.join(HEAD_RESTORING_SEGMENTORS)}), got {model.get('type')!r}")
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if hook.get('type') != 'TokenReductionHook':
            continue
        kwargs = {k: _plain(v) for k, v in hook.items() if k not in ('type', 'priority')}
        if 'reducer' not in kwargs or 'reduce_after_layer' not in kwargs:
            raise InputError(f'custom_hooks[{i}] (TokenReductionHook) needs reducer=dict(type=...) and '
                             f'reduce_after_layer, got {sorted(kwargs)}')
        unknown = set(kwargs) - {'reducer', 'reduce_after_layer', 'restore_after_layer', 'restore_site'}
        if unknown:
            raise InputError(f'custom_hooks[{i}] (TokenReductionHook): unknown arguments {sorted(unknown)}; valid: '
                             'reducer, reduce_after_layer, restore_after_layer, restore_site')
        from ..hosts import host_for_type
        from ..hosts.registry import supported_hosts
        if host_for_type(backbone.get('type')) is None:
            raise InputError(f'custom_hooks[{i}] (TokenReductionHook): supported backbones: {supported_hosts()}; '
                             f"got model.backbone.type={backbone.get('type')!r}")
        _validate(f'custom_hooks[{i}] (TokenReductionHook)', backbone, **kwargs)


TRAINING_KEYS = ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler')


def drop_training(cfg):
    """A test run needs no training objects. Without them nothing builds the training set behind the user's back:
    mmseg's visualization hook reads ``runner.iter``, which builds the train loop and its dataset (an error when
    only the test split is on disk)."""
    for key in TRAINING_KEYS:
        cfg[key] = None
    return cfg


def _dataset_cfgs(dataset, where: str) -> Iterator[Tuple[str, dict]]:
    """The leaf dataset configs of a (possibly wrapped: Repeat / Concat) dataset config."""
    if not dataset:
        return
    if dataset.get('dataset') is not None:
        yield from _dataset_cfgs(dataset['dataset'], f'{where}.dataset')
    elif dataset.get('datasets') is not None:
        for i, d in enumerate(dataset['datasets']):
            yield from _dataset_cfgs(d, f'{where}.datasets[{i}]')
    else:
        yield where, dataset


def _has_file(folder: str) -> bool:
    for _, _, files in os.walk(folder):
        if files:
            return True
    return False


IMAGE_PREFIX_KEYS = ('img_path', 'img')


def check_dataset_folders(cfg, loaders: Sequence[str] = ('test_dataloader',)) -> None:
    """Check that the data root, every ``data_prefix`` folder and the ``ann_file`` of the given dataloaders'
    datasets exist and that the image folder is not empty. Raises InputError naming the config key and saying how
    to point it elsewhere."""
    for loader in loaders:
        dataset = (cfg.get(loader) or {}).get('dataset')
        for where, ds in _dataset_cfgs(dataset, f'{loader}.dataset'):
            root = ds.get('data_root') or ''
            fix = f'(make the data, see the README, or set --cfg-options {where}.data_root=DIR)'
            if root and not _is_remote(root) and not osp.isdir(root):
                raise InputError(f'{where}.data_root: folder not found: {root} {fix}')
            prefix = ds.get('data_prefix') or {}
            for key, sub in prefix.items():
                path = osp.join(root, sub) if sub else root
                if sub and not _is_remote(path) and not osp.isdir(path):
                    raise InputError(f'{where}.data_prefix.{key}: folder not found: {path} {fix}')
            image_key = next((k for k in IMAGE_PREFIX_KEYS if k in prefix), None)
            if image_key is not None:
                images = osp.join(root, prefix[image_key]) if prefix[image_key] else root
                if images and not _is_remote(images) and not _has_file(images):
                    raise InputError(f'{where}: the image folder {images} (data_prefix.{image_key}) is empty: '
                                     f'nothing to evaluate {fix}')
            ann = ds.get('ann_file')
            if ann and isinstance(ann, str) and not _is_remote(ann):
                path = ann if osp.isabs(ann) else osp.join(root, ann)
                if not osp.isfile(path):
                    raise InputError(f'{where}.ann_file: file not found: {path} {fix}')
                if osp.getsize(path) == 0:
                    raise InputError(f'{where}.ann_file: {path} is empty: nothing to evaluate')
