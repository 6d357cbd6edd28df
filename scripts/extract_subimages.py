"""Same as ``python -m rt4ksr.extract_subimages``; kept where the original preprocessing script lived."""

from rt4ksr.extract_subimages import main

if __name__ == "__main__":
    main()
