"""The ``lpfm`` command line (``main``) and its subcommands."""


def main(argv=None):
    from .main import main as _main

    return _main(argv)
