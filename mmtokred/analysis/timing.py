"""Throughput measurement: warm-up, device synchronisation, interleaved repeats, robust statistics."""
import contextlib
import itertools
import os
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..phases import REDUCE, RESTORE, listen
from ..utils.progress import progress_bar  # noqa: F401  (re-exported for the tools)


def synchronize(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def autocast_context(device, dtype):
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def time_interleaved(runs: Dict[str, Callable[[], None]], repeat: int, warmup: int, device='cpu',
                     progress: bool = True) -> Dict[str, List[float]]:
    """Time each callable ``repeat`` times, round-robin (run 1 of every model, then run 2, ...), so slow drifts of
    the machine hit every model alike. Returns seconds per call, per name."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    synchronize(device)
    times = {name: [] for name in names}
    bar = progress_bar(repeat * len(names), progress, 'timing', 'run')
    for _ in range(repeat):
        for name in names:
            synchronize(device)
            t0 = time.perf_counter()
            runs[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
            bar.update(1)
    bar.close()
    return times


def summarize(seconds: Sequence[float]) -> dict:
    q = statistics.quantiles(seconds, n=4) if len(seconds) >= 2 else [seconds[0]] * 3
    med = statistics.median(seconds)
    return dict(median=med, q1=q[0], q3=q[2], iqr_pct=100 * (q[2] - q[0]) / med, n=len(seconds))


def time_phases(run: Callable[[], None], repeat: int, device='cpu') -> Dict[str, float]:
    """Median seconds spent inside the reduce / restore phases per call (synchronising at each boundary: use for
    shares, not for throughput)."""
    per_call = defaultdict(list)
    started = {}

    def listener(name, entering):
        if name not in (REDUCE, RESTORE):
            return
        synchronize(device)
        if entering:
            started[name] = time.perf_counter()
        else:
            acc[name] += time.perf_counter() - started.pop(name)

    for _ in range(repeat):
        acc = defaultdict(float)
        with listen(listener):
            run()
        for name in (REDUCE, RESTORE):
            per_call[name].append(acc[name])
    return {name: statistics.median(v) for name, v in per_call.items()}


def cycle_batches(loader):
    """Loop a (small) data loader forever, so short datasets give real numbers instead of nan."""
    return itertools.cycle(loader) if len(loader) > 0 else iter(())


@contextlib.contextmanager
def stage(what: str, enabled: bool = True, stream=None):
    """Print ``what ...`` before a step that may take seconds and its duration after it (stderr by default)."""
    if not enabled:
        yield
        return
    stream = stream or sys.stderr
    print(f'{what} ...', end='', file=stream, flush=True)
    t0 = time.perf_counter()
    try:
        yield
    except BaseException:
        print(' failed', file=stream, flush=True)
        raise
    print(f' {time.perf_counter() - t0:.1f} s', file=stream, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# is the timing trustworthy? machine load during the runs, spread, speed-up against the GFLOPs ratio
# ----------------------------------------------------------------------------------------------------------------
MAX_IQR_PCT = 10.0          # a spread (IQR / median) above this makes a ratio uncertain by about as much
MAX_EFFICIENCY = 1.3        # speed-up / GFLOPs ratio: measured up to ~1.1 on a quiet machine (BENCHMARKS.md)


def _cpu_busy_seconds() -> Optional[float]:
    """Busy CPU seconds of the whole machine since boot, all cores (Linux /proc/stat), or None."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)          # idle + iowait
    busy = sum(fields[:8]) - idle                                       # user nice system idle iowait irq softirq steal
    return busy / os.sysconf('SC_CLK_TCK')


@dataclass
class MachineLoad:
    """CPU use around a timed block. others_cores: cores busy with other processes on average (None when not
    measurable); loadavg: the 1-minute load average at the end (includes this process)."""
    cores: int
    threads: int
    others_cores: Optional[float] = None
    loadavg: Optional[float] = None

    def describe(self) -> str:
        others = 'n/a' if self.others_cores is None else f'{self.others_cores:.1f}'
        load = '' if self.loadavg is None else f', load average {self.loadavg:.1f}'
        return f'{self.threads} torch threads on {self.cores} cores; other processes used {others} cores{load}'


@contextlib.contextmanager
def measure_machine_load():
    """``with measure_machine_load() as load:`` -> a :class:`MachineLoad` filled in when the block ends."""
    load = MachineLoad(cores=os.cpu_count() or 1, threads=torch.get_num_threads())
    busy0, own0, t0 = _cpu_busy_seconds(), time.process_time(), time.perf_counter()
    yield load
    busy1, own1, wall = _cpu_busy_seconds(), time.process_time(), time.perf_counter() - t0
    if busy0 is not None and busy1 is not None and wall > 0:
        load.others_cores = max(0.0, (busy1 - busy0 - (own1 - own0)) / wall)
    with contextlib.suppress(OSError, AttributeError):
        load.loadavg = os.getloadavg()[0]


def timing_warnings(rows: Sequence[dict], load: Optional[MachineLoad] = None) -> List[str]:
    """Warnings on timings that should not be trusted. rows: dicts with ``name``, ``speedup``, ``flops_ratio`` and
    ``iqr_pct`` (the first row is the reference; ``speedup`` / ``flops_ratio`` may be left out)."""
    out = []
    if load is not None and load.others_cores is not None and load.others_cores + load.threads > load.cores + 0.5:
        free = max(1, int(load.cores - load.others_cores))
        out.append(f'the machine was loaded: other processes used {load.others_cores:.1f} of {load.cores} cores '
                   f'while {load.threads} threads were timed, so the runs competed for CPU and the times (and their '
                   f'ratios) are unreliable; use --num-threads {free} or a quiet machine')
    for r in rows:
        if r.get('iqr_pct', 0) > MAX_IQR_PCT:
            out.append(f"{r['name']}: the spread is large (IQR {r['iqr_pct']:.0f}% of the median > "
                       f'{MAX_IQR_PCT:.0f}%): more --repeat-times, fewer threads or a quieter machine')
    for r in rows[1:]:
        if r.get('flops_ratio', 0) > 0 and r['speedup'] > MAX_EFFICIENCY * max(r['flops_ratio'], 1.0):
            out.append(f"{r['name']}: speed-up {r['speedup']:.2f}x at a {r['flops_ratio']:.2f}x GFLOPs ratio is "
                       f'implausible (more than {MAX_EFFICIENCY}x the compute saved): the reference was probably '
                       'slowed down by other load; re-run on a quiet machine')
    return out


def report_timing(rows: Sequence[dict], load: Optional[MachineLoad], shape, stream=None) -> List[str]:
    """Print the timing conditions (input shape, machine load) and every warning; returns the warnings."""
    stream = stream or sys.stdout
    spreads = [r['iqr_pct'] for r in rows if 'iqr_pct' in r]
    spread = f'; spread (IQR / median) {min(spreads):.1f}-{max(spreads):.1f}%' if spreads else ''
    print(f'timed input: {shape[0]}x{shape[1]}{spread}' + (f'; {load.describe()}' if load else ''), file=stream)
    found = timing_warnings(rows, load)
    for w in found:
        print(f'WARNING: {w}', file=stream)
    return found
