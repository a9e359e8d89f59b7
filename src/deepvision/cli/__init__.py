"""The `deepvision` command line: one entry point, one module per command in `commands/`."""
