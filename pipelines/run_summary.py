"""What the latest run of a pipeline did, read back from its metadata store.

Runner-agnostic: it reads ML Metadata (the SQLite file of a local run), so the
demo summary, the tests and the benchmarks share one reading of "what ran,
how long it took and what it produced".
"""

import dataclasses
import os
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

_PIPELINE_RUN_CONTEXT = 'pipeline_run'
_NODE_CONTEXT = 'node'
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT,
                  metadata_store_pb2.Event.DECLARED_OUTPUT)


@dataclasses.dataclass
class NodeRun:
  """One component's execution in a pipeline run."""
  node_id: str
  state: str  # COMPLETE, CACHED, FAILED, ...
  seconds: float  # Wall time recorded by the metadata store.
  outputs: Dict[str, List[metadata_store_pb2.Artifact]]


def sqlite_store(path: str) -> metadata_store.MetadataStore:
  """A read-only handle to an existing local SQLite metadata store."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no metadata store (run the pipeline '
                            'first).')
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = (
      metadata_store_pb2.SqliteMetadataSourceConfig.READONLY)
  return metadata_store.MetadataStore(config)


def _latest_run(store: metadata_store.MetadataStore,
                pipeline_name: str) -> Optional[metadata_store_pb2.Context]:
  runs = [c for c in store.get_contexts_by_type(_PIPELINE_RUN_CONTEXT)
          if _run_belongs_to(store, c, pipeline_name)]
  return max(runs, key=lambda c: c.create_time_since_epoch, default=None)


def _run_belongs_to(store, run_context, pipeline_name: str) -> bool:
  parents = store.get_parent_contexts_by_context(run_context.id)
  if parents:
    return any(p.name == pipeline_name for p in parents)
  # Older layouts do not link runs to pipelines; fall back to node contexts.
  executions = store.get_executions_by_context(run_context.id)
  return any(
      c.name.startswith(pipeline_name + '.')
      for e in executions[:1] for c in store.get_contexts_by_execution(e.id))


def _node_id(store, execution, pipeline_name: str) -> str:
  for context in store.get_contexts_by_execution(execution.id):
    if context.type == _NODE_CONTEXT or context.name.startswith(
        pipeline_name + '.'):
      return context.name[len(pipeline_name) + 1:]
  return execution.name or str(execution.id)


def _outputs(store, execution) -> Dict[str, List[metadata_store_pb2.Artifact]]:
  events = [e for e in store.get_events_by_execution_ids([execution.id])
            if e.type in _OUTPUT_EVENTS]
  artifacts = {a.id: a for a in store.get_artifacts_by_id(
      [e.artifact_id for e in events])}
  outputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
  for event in events:
    key = event.path.steps[0].key if event.path.steps else ''
    outputs.setdefault(key, []).append(artifacts[event.artifact_id])
  return outputs


def latest_run(metadata_path: str, pipeline_name: str) -> List[NodeRun]:
  """The components of the newest run of ``pipeline_name``, in start order."""
  store = sqlite_store(metadata_path)
  run = _latest_run(store, pipeline_name)
  if run is None:
    return []
  executions = sorted(store.get_executions_by_context(run.id),
                      key=lambda e: e.create_time_since_epoch)
  return [
      NodeRun(
          node_id=_node_id(store, e, pipeline_name),
          state=metadata_store_pb2.Execution.State.Name(e.last_known_state),
          seconds=(e.last_update_time_since_epoch -
                   e.create_time_since_epoch) / 1000.0,
          outputs=_outputs(store, e)) for e in executions
  ]
