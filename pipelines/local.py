"""Runs a pipeline locally: LocalDagRunner, SQLite metadata, DirectRunner.

Every example's local runner is a thin shell over ``run``: it builds its
pipeline with ``local_paths``' metadata store and pipeline root, runs it, and
gets back the summary (printed and written to ``summary.json``).
"""

import dataclasses
import os
from typing import Any, Dict, Mapping, Optional

from tfx import v1 as tfx

from pipelines import run_summary
from pipelines import summary as summary_lib


@dataclasses.dataclass(frozen=True)
class LocalPaths:
  """Where a local run writes: ``<output_dir>/<pipeline_name>/...``."""
  output_dir: str
  pipeline_root: str
  metadata_path: str

  @property
  def metadata_connection_config(self) -> Any:
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(
        self.metadata_path)


def local_paths(output_dir: str, pipeline_name: str) -> LocalPaths:
  """The run's folders; a pipeline name may not leave ``output_dir``."""
  root = os.path.abspath(output_dir)
  run_dir = os.path.abspath(os.path.join(root, pipeline_name))
  if os.path.dirname(run_dir) != root:
    raise ValueError(f'Pipeline name {pipeline_name!r} would write outside '
                     f'{root}; use a plain name such as "movies".')
  os.makedirs(run_dir, exist_ok=True)
  return LocalPaths(output_dir=run_dir,
                    pipeline_root=os.path.join(run_dir, 'pipeline_root'),
                    metadata_path=os.path.join(run_dir, 'metadata.sqlite'))


def run(pipeline: tfx.dsl.Pipeline, paths: LocalPaths,
        extra_sections: Optional[Mapping[str, summary_lib.Section]] = None
       ) -> Dict[str, Any]:
  """Runs ``pipeline`` and returns its summary (also written as JSON)."""
  tfx.orchestration.LocalDagRunner().run(pipeline)
  result = summary_lib.build_summary(
      run_summary.latest_run(paths.metadata_path, pipeline.pipeline_info
                             .pipeline_name), extra_sections)
  result['summary_path'] = summary_lib.write_summary(result, paths.output_dir)
  return result
