"""MoviesExampleGen: a Beam ExampleGen over the movies SQLite database."""

from components.movies_example_gen.component import MoviesExampleGen

__all__ = ['MoviesExampleGen']
