"""A synthetic interaction log, written as TFRecords of raw tf.Examples.

Each user likes a few item categories; each item has a category and a hidden
quality. A user's interactions come in time order; the rating (1-5) rises when
the category is liked and with the item's quality, plus noise, so it is
learnable from the user, the item and the history. The log is split by time:
each user's last ``eval_share`` of interactions go to ``eval``; with
``new_user_share`` > 0 that share of users appears only in ``eval`` (cold
users, as in a time-split production log).

    write_log(directory, LogOptions(num_users=300))
    -> directory/train/interactions.tfrecord, directory/eval/...
"""

import dataclasses
import json
import os
from typing import Dict, List

import numpy as np
import tensorflow as tf

from pipelines.interactions import features

SPLITS = ('train', 'eval')
FILE_NAME = 'interactions.tfrecord'
OPTIONS_FILE = 'options.json'


@dataclasses.dataclass(frozen=True)
class LogOptions:
  """Size and shape of the generated log."""

  num_users: int = 300
  num_items: int = 400
  num_categories: int = 10
  interactions_per_user: int = 12
  max_history: int = 10
  eval_share: float = 0.25
  new_user_share: float = 0.0
  seed: int = 0

  def __post_init__(self):
    for name in ('num_users', 'num_items', 'num_categories',
                 'interactions_per_user', 'max_history'):
      if getattr(self, name) < 1:
        raise ValueError(f'LogOptions.{name} must be >= 1.')
    for name in ('eval_share', 'new_user_share'):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f'LogOptions.{name} must be in [0, 1).')


def to_example(row: Dict[str, object]) -> bytes:
  """A row as a serialized tf.Example; keys a row lacks are left out."""

  def strings(values: List[str]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[v.encode() for v in values]))

  def ints(values: List[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

  feature = {}
  for key in (features.USER, features.ITEM, features.CATEGORY):
    if key in row:
      feature[key] = strings([row[key]])
  if features.HISTORY in row:
    feature[features.HISTORY] = strings(row[features.HISTORY])
  for key in (features.LABEL, features.TIMESTAMP):
    if key in row:
      feature[key] = ints([row[key]])
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString()


def generate(options: LogOptions) -> Dict[str, List[Dict[str, object]]]:
  """The log's rows per split (deterministic in ``options.seed``)."""
  rng = np.random.default_rng(options.seed)
  item_category = rng.integers(options.num_categories, size=options.num_items)
  item_quality = rng.normal(0.0, 0.7, size=options.num_items)
  rows: Dict[str, List[Dict[str, object]]] = {split: [] for split in SPLITS}
  time = 0
  for user in range(options.num_users):
    liked = set(rng.choice(options.num_categories, size=2, replace=False))
    new_user = rng.random() < options.new_user_share
    history: List[str] = []
    count = options.interactions_per_user
    first_eval = int(round(count * (1 - options.eval_share)))
    for index in range(count):
      item = int(rng.integers(options.num_items))
      is_liked = item_category[item] in liked
      score = 3 + (1.5 if is_liked else -1.0) + item_quality[item]
      rating = int(np.clip(np.round(score + rng.normal(0, 0.5)), 1, 5))
      split = 'eval' if new_user or index >= first_eval else 'train'
      time += 1
      rows[split].append({
          features.USER: f'user_{user}',
          features.ITEM: f'item_{item}',
          features.CATEGORY: f'category_{item_category[item]}',
          features.HISTORY: history[-options.max_history:],
          features.LABEL: rating,
          features.TIMESTAMP: time,
      })
      history = history + [f'item_{item}']
  return rows


def write_log(directory: str, options: LogOptions = LogOptions()
             ) -> Dict[str, int]:
  """Writes ``<directory>/<split>/interactions.tfrecord``; rows per split."""
  counts = {}
  for split, rows in generate(options).items():
    split_dir = os.path.join(directory, split)
    tf.io.gfile.makedirs(split_dir)
    with tf.io.TFRecordWriter(os.path.join(split_dir, FILE_NAME)) as writer:
      for row in rows:
        writer.write(to_example(row))
    counts[split] = len(rows)
  return counts


def ensure_log(directory: str, options: LogOptions = LogOptions()) -> bool:
  """Writes the log unless ``directory`` already holds it for ``options``.

  Rewriting identical files would still change their modification times,
  which TFX's ExampleGen fingerprints: a rerun would then not take the
  pipeline's components from the cache. Returns True when it wrote.
  """
  options_path = os.path.join(directory, OPTIONS_FILE)
  wanted = json.dumps(dataclasses.asdict(options), sort_keys=True)
  if tf.io.gfile.exists(options_path):
    with tf.io.gfile.GFile(options_path) as f:
      if f.read() == wanted:
        return False
  write_log(directory, options)
  with tf.io.gfile.GFile(options_path, 'w') as f:
    f.write(wanted)
  return True
