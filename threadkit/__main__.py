"""``python -m threadkit``: the ``threadkit`` command line."""

from threadkit.cli import main

if __name__ == "__main__":
    main()
