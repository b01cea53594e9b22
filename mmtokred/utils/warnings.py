"""The third-party warnings every tool run printed (even ``-h``), none of which a user can act on.

Our tools silence exactly these (:func:`silence_known_warnings`, called by :func:`mmtokred.utils.cli.run_cli`);
``import mmtokred`` silences the import-time ones only while it imports OpenMMLab (:func:`quiet_imports`), so a
user's own code keeps every warning filter it had. Each entry: (message regex, category, why it is harmless).
"""
import contextlib
import warnings

KNOWN_WARNINGS = (
    # setuptools >= 81 deprecates pkg_resources, which mmengine / mmcv import; nothing to do for a user
    (r'pkg_resources is deprecated', UserWarning),
    # mmseg's CrossEntropyLoss and losses built through the deprecated helper, in every model build
    (r'.*``build_loss`` would be deprecated', Warning),
    (r'Default ``avg_non_ignore`` is False', Warning),
    # torch >= 2.6 when TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set by allow_trusted_checkpoints (our choice, documented)
    (r'Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected', UserWarning),
    (r'You are using `torch.load` with `weights_only=False`', FutureWarning),
    # mmseg's visualization hook when nothing is drawn (no --show / --show-dir), every test run
    (r'The draw is False, it means that the hook for visualization will not take effect', UserWarning),
    # mmseg's own ADE20K pipelines set reduce_zero_label in LoadAnnotations, as upstream configs do
    (r'`reduce_zero_label` will be deprecated', UserWarning),
    # torch >= 2.12 deprecates DDP's broadcast_buffers, which mmengine passes (False) in every multi-process run
    (r'`broadcast_buffers` is deprecated', FutureWarning),
    # mmseg / mmdet Swin's relative-position index (torch.meshgrid without indexing=), every Swin run
    (r'torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument', UserWarning),
)


def silence_known_warnings():
    """Ignore the :data:`KNOWN_WARNINGS` for the rest of this process (for our tools' own processes)."""
    for pattern, category in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=pattern, category=category)


@contextlib.contextmanager
def quiet_imports():
    """Ignore the :data:`KNOWN_WARNINGS` inside the block only; the caller's filters are restored after it."""
    with warnings.catch_warnings():
        silence_known_warnings()
        yield


# Messages mmengine logs (not Python warnings) that a user cannot act on either.
KNOWN_LOG_MESSAGES = (
    # mmengine's BaseMetric when a metric has no prefix: upstream mmseg configs build IoUMetric without one (the
    # metric names stay 'mIoU', ...)
    'The prefix is not set in metric class',
)


class _KnownLogMessages:
    """A logging filter that drops the :data:`KNOWN_LOG_MESSAGES`."""

    @staticmethod
    def filter(record) -> bool:
        return not any(str(record.msg).startswith(m) for m in KNOWN_LOG_MESSAGES)


@contextlib.contextmanager
def quiet_known_log_messages():
    """Drop the :data:`KNOWN_LOG_MESSAGES` of the current mmengine logger inside the block."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    logger.addFilter(_KnownLogMessages)
    try:
        yield
    finally:
        logger.removeFilter(_KnownLogMessages)
