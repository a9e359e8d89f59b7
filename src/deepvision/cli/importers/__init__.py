"""Sub-commands of `deepvision import`, one module per format (see cli/commands/import_.py)."""
