"""MoviesExampleGen: a Beam ExampleGen over the movies SQLite database."""

from pipelines.movies.example_gen.component import MoviesExampleGen

__all__ = ['MoviesExampleGen']
