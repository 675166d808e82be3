"""Tasks own the loss, the metric and the Lightning loops that train and evaluate a model."""
