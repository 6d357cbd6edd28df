"""``python -m rt4ksr.benchmark <data> [overrides]``."""

import sys

COMMANDS = ("data",)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m rt4ksr.benchmark {{{'|'.join(COMMANDS)}}} [key=value ...]")
    command = sys.argv.pop(1)
    if command == "data":
        from rt4ksr.benchmark.data import main as run
    run()


if __name__ == "__main__":
    main()
