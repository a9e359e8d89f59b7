"""Sending models out: ONNX and TorchScript files verified against PyTorch (`deepvision export`)."""
