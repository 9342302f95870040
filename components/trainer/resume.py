"""Resume a killed Trainer when the pipeline is rerun with the same inputs.

TFX gives every execution a new ModelRun folder, so checkpoints written there
are lost to a rerun. The executor instead trains in a working folder named by
a fingerprint of what determines the run (the input artifacts' URIs and the
execution properties: spec, config, splits):

    <pipeline_root>/<Trainer>/resume/<fingerprint>/

A rerun with the same inputs and config finds the same folder and resumes
from its newest readable checkpoint. Other inputs or another config give
another fingerprint, so their checkpoints are never picked up. When training
and export succeed, the folder's contents move into the ModelRun artifact
and the folder is deleted, so a finished run is never resumed either.
"""

import hashlib
import json
import os
from typing import Any, Dict, List, Mapping

import tensorflow as tf
from absl import logging

RESUME_DIR = 'resume'


def fingerprint(input_uris: Mapping[str, List[str]],
                exec_properties: Mapping[str, Any]) -> str:
  """A short hash of the inputs' URIs and the execution properties."""
  payload = json.dumps({
      'inputs': {key: sorted(uris) for key, uris in input_uris.items()},
      'properties': {key: value for key, value in exec_properties.items()
                     if value is not None},
  }, sort_keys=True, default=str)
  return hashlib.sha256(payload.encode('utf-8')).hexdigest()[:16]


def working_dir(model_run_uri: str, run_fingerprint: str) -> str:
  """The resumable folder beside the component's ModelRun folders.

  ModelRun URIs are ``<root>/<component>/model_run/<execution id>``; the
  working folder is ``<root>/<component>/resume/<fingerprint>``.
  """
  component_dir = os.path.dirname(os.path.dirname(model_run_uri.rstrip('/')))
  return os.path.join(component_dir, RESUME_DIR, run_fingerprint)


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
