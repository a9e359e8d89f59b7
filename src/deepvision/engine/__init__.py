"""The training engine: tasks, the trainer loop, callbacks, checkpoints, distributed helpers."""
