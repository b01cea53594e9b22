"""Models ported into OpenMMLab packages (registered in their registries on import)."""
from . import maskdino  # noqa: F401
