"""TFX components and the TPU embedding library."""
