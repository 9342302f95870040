"""Resume a killed Trainer when the pipeline is rerun with the same inputs.

TFX gives every execution a new ModelRun folder, so checkpoints written there
are lost to a rerun. The executor instead trains in a working folder named by
a fingerprint of what determines the trained model (the input artifacts' URIs
and the execution properties: spec, config, splits):

    <resume root>/<fingerprint>/

The resume root must outlive a pipeline run. ``create_pipeline`` sets it to
``<pipeline_root>/<Trainer>/resume``: on Vertex AI every pipeline job writes
its artifacts under a folder of its own, so a folder beside the ModelRun would
be new on every rerun. Without one (a Trainer built by hand), the folder sits
beside the component's ModelRun folders, which a local TFX run keeps in one
place.

A rerun with the same inputs and config finds the same folder and resumes
from its newest readable checkpoint; settings that only change how the run is
carried out (``config.EXECUTION_ONLY_FIELDS``: steps per call, log and
checkpoint intervals) may differ. Other inputs or another config give another
fingerprint, so their checkpoints are never picked up. When training and
export succeed, the folder's contents move into the ModelRun artifact and the
folder is deleted, so a finished run is never resumed either.
"""

import hashlib
import json
import os
from typing import Any, Dict, List, Mapping, Optional

import tensorflow as tf
from absl import logging

RESUME_DIR = 'resume'


def fingerprint(input_uris: Mapping[str, List[str]],
                properties: Mapping[str, Any]) -> str:
  """A short hash of the inputs' URIs and the (non-None) properties."""
  payload = json.dumps({
      'inputs': {key: sorted(uris) for key, uris in input_uris.items()},
      'properties': {key: value for key, value in properties.items()
                     if value is not None},
  }, sort_keys=True, default=str)
  return hashlib.sha256(payload.encode('utf-8')).hexdigest()[:16]


def working_dir(model_run_uri: str, run_fingerprint: str,
                resume_root: Optional[str] = None) -> str:
  """``<resume_root>/<fingerprint>``; by default beside the ModelRun folders.

  Local ModelRun URIs are ``<root>/<component>/model_run/<execution id>``;
  the default folder is ``<root>/<component>/resume/<fingerprint>``.
  """
  if not resume_root:
    component_dir = os.path.dirname(os.path.dirname(model_run_uri.rstrip('/')))
    resume_root = os.path.join(component_dir, RESUME_DIR)
  return os.path.join(resume_root, run_fingerprint)


def _copy_tree(source: str, target: str) -> None:
  for directory, _, files in tf.io.gfile.walk(source):
    relative = os.path.relpath(directory, source)
    destination = os.path.normpath(os.path.join(target, relative))
    tf.io.gfile.makedirs(destination)
    for name in files:
      tf.io.gfile.copy(os.path.join(directory, name),
                       os.path.join(destination, name), overwrite=True)


def finish(work_dir: str, model_run_uri: str) -> None:
  """Moves a finished run's folder into the ModelRun artifact."""
  _copy_tree(work_dir, model_run_uri)
  tf.io.gfile.rmtree(work_dir)
  logging.info('Training state moved from %s to %s.', work_dir, model_run_uri)


def input_uris(input_dict: Mapping[str, List[Any]]) -> Dict[str, List[str]]:
  """The URIs of every input artifact, by input key."""
  return {key: [artifact.uri for artifact in artifacts]
          for key, artifacts in input_dict.items()}
