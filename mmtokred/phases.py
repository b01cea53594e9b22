"""Named phases of a forward pass, so that cost counters and profilers can attribute work.

Hosts mark where their reduction machinery runs (``with phase('reduce'): ...``); counters read
:func:`current_phase`. Marking costs one list append and pop: it stays on in production code.
"""
from contextlib import contextmanager

BACKBONE_FULL = 'backbone: before reduction'
BACKBONE_REDUCED = 'backbone: reduced span'
BACKBONE_AFTER = 'backbone: after restore'
REDUCE = 'reduction ops: reduce'
RESTORE = 'reduction ops: restore'
HEAD = 'decode head / neck'
ORDER = (BACKBONE_FULL, REDUCE, BACKBONE_REDUCED, RESTORE, BACKBONE_AFTER, HEAD)

_stack = []
_listeners = []   # callables (name, entering: bool); empty in normal runs


def push_phase(name: str):
    """Enter phase ``name`` (for callers that cannot use a ``with`` block, e.g. forward pre-hooks)."""
    _stack.append(name)
    for fn in _listeners:
        fn(name, True)


def pop_phase():
    """Leave the innermost phase. Returns None, so it can serve as a forward hook (a hook's return value would
    replace the module's output)."""
    name = _stack[-1]
    for fn in _listeners:
        fn(name, False)
    _stack.pop()


@contextmanager
def phase(name: str):
    push_phase(name)
    try:
        yield
    finally:
        pop_phase()


@contextmanager
def listen(fn):
    """Call ``fn(name, entering)`` at every phase boundary while active (used by the phase timer)."""
    _listeners.append(fn)
    try:
        yield
    finally:
        _listeners.remove(fn)


def phase_depth() -> int:
    """How many phases are open (to unwind after an exception left some open)."""
    return len(_stack)


def current_phase(default=None):
    return _stack[-1] if _stack else default
