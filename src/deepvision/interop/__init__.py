"""Weights from other frameworks: Keras `.h5` files (read with h5py) into deepvision runs."""
