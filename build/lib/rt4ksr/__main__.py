"""``python -m rt4ksr <command> ...``: the same as the ``rt4ksr`` console command."""

from rt4ksr.cli import main

if __name__ == "__main__":
    main()
