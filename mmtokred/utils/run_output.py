"""What a test run prints: a short header (config, checkpoint, dataset size, reduction, GFLOPs) and the results;
everything mmengine logs (environment, config dump, hooks, per-class tables, the evaluators' own prints) goes to
the log file in the work dir, and to the screen as well with ``--verbose``.

Used by ``tools/test.py`` (:func:`quiet_runner_class`, with
:func:`mmtokred.analysis.runner_hooks.progress_and_flops_hook`) and by the sweep and the demo
(:func:`console_to_file`).
"""
import contextlib
import io
import logging
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
