"""``python -m rt4ksr.benchmark [overrides]`` (model speed) and ``python -m rt4ksr.benchmark data [overrides]``."""

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "data":
        sys.argv.pop(1)
        from rt4ksr.benchmark.data import main as run
    else:
        if len(sys.argv) > 1 and sys.argv[1] == "model":
            sys.argv.pop(1)
        from rt4ksr.benchmark.model import main as run
    run()


if __name__ == "__main__":
    main()
