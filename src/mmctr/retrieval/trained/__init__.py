"""Track 1's trained retriever: two towers over the frozen encoders (features.py), the model
(model.py), training with InfoNCE and hard negatives and the run directory (train.py)."""
