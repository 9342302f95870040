"""Wall time of each component of the demo pipeline's latest run.

Read from the run's ML Metadata store (`output/movies/metadata.sqlite`, written
by `make demo`) with `pipelines.run_summary.latest_run`; the demo is not run
here.
"""

import os
from typing import Any, Dict

DEFAULT_METADATA_PATH = os.path.join('output', 'movies', 'metadata.sqlite')
DEFAULT_PIPELINE_NAME = 'movies'


def component_times(metadata_path: str = DEFAULT_METADATA_PATH,
                    pipeline_name: str = DEFAULT_PIPELINE_NAME
                   ) -> Dict[str, Any]:
  """`{'found': bool, 'path', 'nodes': [{node_id, state, seconds}], ...}`.

  A missing store is reported as not found (and not created: the store helper
  opens SQLite files with OPENCREATE).
  """
  path = os.path.abspath(metadata_path)
  result: Dict[str, Any] = {'path': path, 'pipeline_name': pipeline_name,
                            'found': False, 'nodes': []}
  if not os.path.isfile(path):
    result['reason'] = 'no metadata store (make demo has not run)'
    return result
  from pipelines import run_summary  # pylint: disable=g-import-not-at-top
  try:
    runs = run_summary.latest_run(path, pipeline_name)
  except Exception as e:  # pylint: disable=broad-except
    result['reason'] = f'could not read the store: {type(e).__name__}: {e}'
    return result
  if not runs:
    result['reason'] = f'the store holds no run of {pipeline_name!r}'
    return result
  result['found'] = True
  result['modified'] = os.path.getmtime(path)
  completed = _latest_completed(run_summary.sqlite_store(path), pipeline_name)
  result['nodes'] = [{'node_id': run.node_id, 'state': run.state,
                      'seconds': run.seconds,
                      'last_completed': completed.get(run.node_id)}
                     for run in runs]
  return result


def _latest_completed(store: Any, pipeline_name: str) -> Dict[str, Any]:
  """Per node: the newest execution that ran to completion (not cached).

  A cached component of the latest run took no time; its last real run, in
  an earlier pipeline run, says what it costs.
  """
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  prefix = pipeline_name + '.'
  completed = {}
  for context in store.get_contexts_by_type('node'):
    if not context.name.startswith(prefix):
      continue
    runs = [e for e in store.get_executions_by_context(context.id)
            if e.last_known_state == metadata_store_pb2.Execution.COMPLETE]
    if runs:
      newest = max(runs, key=lambda e: e.create_time_since_epoch)
      completed[context.name[len(prefix):]] = {
          'seconds': (newest.last_update_time_since_epoch -
                      newest.create_time_since_epoch) / 1000.0,
          'finished': newest.last_update_time_since_epoch / 1000.0}
  return completed
