"""CLI commands; each module defines `register(subparsers)` and an optional ORDER for --help."""
