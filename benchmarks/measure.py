"""Measurement helpers: summaries, process memory, machine facts, workers.

Every measured configuration runs in a worker subprocess
(`python -m benchmarks.worker`), so that its peak resident memory (VmHWM) is
its own and no state (traced functions, allocator caches) leaks from one
configuration into the next.
"""

import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

WORKER_MODULE = 'benchmarks.worker'
_PACKAGES = ('tensorflow', 'tf-keras', 'tfx', 'apache-beam',
             'tensorflow-data-validation', 'tensorflow-transform', 'tfx-bsl',
             'numpy', 'pyarrow')


def summarize(values: Sequence[float]) -> Dict[str, Any]:
  """Median, min and max of repeated measurements (and the raw values)."""
  values = [float(v) for v in values]
  if not values:
    raise ValueError('Nothing to summarize: no measurements.')
  return {'median': statistics.median(values), 'min': min(values),
          'max': max(values), 'n': len(values), 'values': values}


def ratio(numerator: Optional[float],
          denominator: Optional[float]) -> Optional[float]:
  """numerator / denominator, None when either is missing or not positive."""
  if not numerator or not denominator or numerator <= 0 or denominator <= 0:
    return None
  return numerator / denominator


def is_sane(value: Any) -> bool:
  """Whether a measurement is a positive, finite number."""
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _proc_status_bytes(field: str) -> int:
  """A `kB` field of /proc/self/status, in bytes (0 where unavailable)."""
  try:
    with open('/proc/self/status', encoding='ascii') as status:
      for line in status:
        if line.startswith(field + ':'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def peak_rss_bytes() -> int:
  """This process's peak resident memory so far (VmHWM)."""
  peak = _proc_status_bytes('VmHWM')
  if peak:
    return peak
  import resource  # pylint: disable=g-import-not-at-top
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
  """This process's resident memory now (VmRSS)."""
  return _proc_status_bytes('VmRSS')


def _package_versions() -> Dict[str, str]:
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = 'not installed'
  return versions


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as cpuinfo:
      for line in cpuinfo:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def _memory_bytes() -> int:
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def _os_name() -> str:
  try:
    with open('/etc/os-release', encoding='utf-8') as release:
      for line in release:
        if line.startswith('PRETTY_NAME='):
          return line.split('=', 1)[1].strip().strip('"')
  except OSError:
    pass
  return platform.platform()


def machine_info() -> Dict[str, Any]:
  """Cores, memory, CPU, OS and the versions of the stack."""
  return {
      'cores': os.cpu_count(),
      'usable_cores': len(os.sched_getaffinity(0)),
      'memory_bytes': _memory_bytes(),
      'cpu': _cpu_model(),
      'os': _os_name(),
      'python': platform.python_version(),
      'packages': _package_versions(),
  }


def load_average() -> List[float]:
  """The 1, 5 and 15 minute load averages."""
  return [round(v, 2) for v in os.getloadavg()]


def system_busy_seconds() -> float:
  """CPU-seconds all cores of the machine spent busy since boot (/proc/stat)."""
  try:
    with open('/proc/stat', encoding='ascii') as stat:
      fields = [int(v) for v in stat.readline().split()[1:]]
  except OSError:
    return 0.0
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
  return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def own_cpu_seconds() -> float:
  """CPU-seconds used by this process and its finished children."""
  import resource  # pylint: disable=g-import-not-at-top
  total = 0.0
  for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
    usage = resource.getrusage(who)
    total += usage.ru_utime + usage.ru_stime
  return total


def worker_env() -> Dict[str, str]:
  """The environment of a worker: Keras 2 as tf.keras, quiet TensorFlow."""
  env = dict(os.environ)
  env['TF_USE_LEGACY_KERAS'] = '1'
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env['PYTHONPATH'] = os.pathsep.join(
      [root] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
  return env


def _error_results(cases: Sequence[Mapping[str, Any]],
                   message: str) -> List[Dict[str, Any]]:
  return [{'case': dict(case), 'error': message} for case in cases]


def run_worker(cases: Sequence[Mapping[str, Any]],
               timeout_s: float = 600.0) -> List[Dict[str, Any]]:
  """Runs `cases` in one fresh subprocess, in order; returns their results.

  A case that fails yields `{'case': ..., 'error': ...}` instead of stopping
  the benchmark.
  """
  with tempfile.TemporaryDirectory(prefix='bench_worker_') as tmp:
    cases_path = os.path.join(tmp, 'cases.json')
    result_path = os.path.join(tmp, 'results.json')
    with open(cases_path, 'w', encoding='utf-8') as f:
      json.dump(list(cases), f)
    start = time.perf_counter()
    try:
      process = subprocess.run(
          [sys.executable, '-m', WORKER_MODULE, '--cases', cases_path,
           '--results', result_path],
          env=worker_env(), capture_output=True, text=True, timeout=timeout_s,
          check=False)
    except subprocess.TimeoutExpired:
      return _error_results(cases, f'worker timed out after {timeout_s:.0f} s')
    if not os.path.exists(result_path):
      tail = (process.stderr or process.stdout or '')[-2000:]
      return _error_results(
          cases, f'worker exited with {process.returncode}: {tail}')
    with open(result_path, encoding='utf-8') as f:
      results = json.load(f)
  for result in results:
    result['worker_seconds'] = time.perf_counter() - start
  return results
