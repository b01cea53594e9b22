"""What a test run prints: a short header (config, checkpoint, dataset size, reduction, GFLOPs) and the results;
everything mmengine logs (environment, config dump, hooks, per-class tables, the evaluators' own prints) goes to
the log file in the work dir, and to the screen as well with ``--verbose``.

Used by ``tools/test.py`` (:func:`quiet_runner_class`, :func:`progress_and_flops_hook`) and by the sweep
(:func:`console_to_file`).
"""
import contextlib
import io
import logging
import sys
from typing import Dict, Optional


def _console_handlers(logger):
    return [h for h in logger.handlers if isinstance(h, logging.StreamHandler)
            and not isinstance(h, logging.FileHandler)]


def quiet_runner_class(verbose: bool):
    """An mmengine ``Runner`` subclass whose console shows warnings only (all levels with ``verbose``; the log file
    always gets everything) and that logs its environment and config dump only when :meth:`log_env` is called: after
    the strict checkpoint check, so a wrong checkpoint is reported before any dump."""
    from mmengine.runner import Runner

    class TestRunner(Runner):
        def build_logger(self, *args, **kwargs):
            logger = super().build_logger(*args, **kwargs)
            if not verbose:
                for handler in _console_handlers(logger):
                    handler.setLevel(max(handler.level, logging.WARNING))
            return logger

        def _log_env(self, env_cfg):
            self._deferred_env_cfg = env_cfg

        def log_env(self):
            super()._log_env(self._deferred_env_cfg)

        def log_file(self) -> Optional[str]:
            return next((h.baseFilename for h in self.logger.handlers if isinstance(h, logging.FileHandler)), None)

    return TestRunner


@contextlib.contextmanager
def console_to_file(path: Optional[str], verbose: bool = False):
    """Inside the block, the current mmengine logger writes to ``path`` (appended) and shows only errors on the
    console (everything with ``verbose``), and ``print`` output of the block (pycocotools, panopticapi, mmseg's
    tables) goes to ``path`` too unless ``verbose``. Handler levels are restored after the block."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    file_handler = None
    if path:
        file_handler = logging.FileHandler(path, mode='a')
        file_handler.setFormatter(logging.Formatter('%(asctime)s - %(name)s - %(levelname)s - %(message)s'))
        logger.addHandler(file_handler)
    saved = [(h, h.level) for h in _console_handlers(logger)]
    if not verbose:
        for handler, level in saved:
            handler.setLevel(max(level, logging.ERROR))
    try:
        with captured_stdout(logger, enabled=not verbose):
            yield
    finally:
        for handler, level in saved:
            handler.setLevel(level)
        if file_handler is not None:
            logger.removeHandler(file_handler)
            file_handler.close()


@contextlib.contextmanager
def captured_stdout(logger=None, enabled: bool = True):
    """Inside the block, what is printed to stdout (third-party code prints: mmengine's checkpoint loader,
    pycocotools, panopticapi) is logged at INFO at the end of the block, even on an error, by ``logger`` (default:
    the current mmengine logger then: a Runner's, created inside the block): its log file, and the console only
    when that shows INFO."""
    if not enabled:
        yield
        return
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        text = buffer.getvalue().rstrip()
        if text:
            if logger is None:
                from mmengine.logging import MMLogger
                logger = MMLogger.get_current_instance()
            logger.info('printed:\n' + text)


# ----------------------------------------------------------------------------------------------------------------
# the header and the results
# ----------------------------------------------------------------------------------------------------------------
def _plain(value):
    return value.to_dict() if hasattr(value, 'to_dict') else value


def _call(kind: str, settings: dict) -> str:
    return f"{kind}({', '.join(f'{k}={v!r}' for k, v in settings.items())})"


def describe_reduction(cfg) -> str:
    """The reduction a config applies, on one line ('none' for an unreduced model)."""
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or {}
    parts = []
    reducer = _plain(backbone.get('reducer'))
    if reducer:
        reducer = dict(reducer)
        where = {k: _plain(backbone.get(k)) for k in ('reduce_after_layer', 'restore_after_layer', 'restore_site')
                 if backbone.get(k) is not None}
        parts.append(f"{_call(reducer.pop('type', '?'), reducer)} in {backbone.get('type')} "
                     f"({', '.join(f'{k}={v}' for k, v in where.items())})")
    for hook in cfg.get('custom_hooks') or []:
        if hook.get('type') == 'TokenReductionHook':
            hook = dict(_plain(hook))
            reducer = dict(_plain(hook.pop('reducer')))
            hook.pop('type')
            parts.append(f"{_call(reducer.pop('type', '?'), reducer)} by TokenReductionHook "
                         f"({', '.join(f'{k}={v}' for k, v in hook.items())})")
    if backbone.get('compensator') is not None:
        parts.append('with a Token Compensator')
    if model.get('input_scale') not in (None, 1, 1.0):
        parts.append(f"input scaled by {model.get('input_scale')}")
    return '; '.join(parts) or 'none'


def format_metrics(metrics: Dict[str, object]) -> str:
    """``name: value`` lines of the numeric metrics (the per-class tables are in the log)."""
    lines = []
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        lines.append(f'  {name}: {value:.4f}' if isinstance(value, float) else f'  {name}: {value}')
    return '\n'.join(lines)


def progress_and_flops_hook(show_progress: bool = True, stream=None):
    """A hook that counts the GFLOPs of the model's tensor forward on the first test image (one extra forward,
    before the test loop) and prints them to ``stream`` (default: the stdout of this call, even when the test's own
    output is captured later), and shows a progress bar; both on the main process only."""
    from mmengine.hooks import Hook
    from mmengine.model import BaseTTAModel, is_model_wrapper

    from .dist import is_main_process

    stream = stream or sys.stdout

    class _Hook(Hook):
        priority = 'VERY_LOW'

        def __init__(self):
            self.bar = None
            self.gflops = None

        def before_test_epoch(self, runner):
            from ..analysis.timing import progress_bar
            if is_main_process():
                self.count_flops(runner)
            self.bar = progress_bar(len(runner.test_dataloader), show_progress and is_main_process(), 'testing',
                                    'batch')

        def count_flops(self, runner):
            model = runner.model
            while is_model_wrapper(model):
                model = model.module
            if isinstance(model, BaseTTAModel) or len(runner.test_dataloader) == 0:
                return      # TTA: several augmented views per image, no single forward to count
            import torch

            from ..analysis.flops import count_model_macs
            from ..analysis.models import tensor_forward
            with torch.no_grad():
                inputs = model.data_preprocessor(next(iter(runner.test_dataloader)), False)['inputs']
                counter = count_model_macs(model, inputs[:1], tensor_forward)
            self.gflops = counter.total() / 1e9
            backbone = sum(v for k, v in counter.by_phase().items() if k.startswith('backbone')) / 1e9
            h, w = inputs.shape[-2:]
            print(f'GFLOPs: {self.gflops:.2f} (backbone {backbone:.2f}) for the first test image at {h}x{w} '
                  '(model forward, no post-processing)', file=stream, flush=True)

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.bar.update(1)

        def after_test_epoch(self, runner, metrics=None):
            self.bar.close()

    return _Hook()
