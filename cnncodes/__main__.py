"""``python -m cnncodes``: the command line."""

from cnncodes.cli import cli

if __name__ == "__main__":
    cli()
