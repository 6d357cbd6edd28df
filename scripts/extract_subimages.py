"""Same as ``python -m rt4ksr.data.extract_subimages``; kept where the original preprocessing script lived."""

from rt4ksr.data.extract_subimages import main

if __name__ == "__main__":
    main()
