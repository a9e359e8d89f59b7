"""CLI commands; each module defines `register(subparsers)` and an optional ORDER for --help.

Modules whose name starts with an underscore are helpers of another command and are not registered.
"""
