"""The TPU embedding Trainer: TFX component, training loop, export."""
