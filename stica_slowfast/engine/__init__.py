"""Training engine: optimiser and LR schedule, checkpoints, meters, launch, train and test loops.

The engine is generic: it never branches on a model's name. A method exposes ``forward_train``,
``forward_features`` and optional hooks, and the engine drives them.
"""
