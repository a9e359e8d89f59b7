"""Models from other frameworks into deepvision runs: MXNet checkpoints (a pure-Python `.params`
reader and a graph builder) and Keras `.h5` files (read with h5py)."""
