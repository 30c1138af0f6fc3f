"""Entry point of `python -m bench` (`make bench`)."""

from bench.harness import main

if __name__ == "__main__":
    raise SystemExit(main())
