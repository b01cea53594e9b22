"""A progress bar for long loops (evaluation, distillation); a leaf utility."""


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def progress_bar(total, enabled=True, desc='', unit='it'):
    """A tqdm bar, or a silent stand-in when disabled (or tqdm is missing)."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, leave=False)
