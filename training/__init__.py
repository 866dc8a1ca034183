"""Stage 2 of the loop: one training pipeline over model specs (LightGBM + Optuna, tracked in MLflow)."""
