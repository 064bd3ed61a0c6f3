"""MLflow: experiment tracking from every step, and the model registry (register, promote, predict)."""
