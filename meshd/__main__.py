"""`python -m meshd`: the same as the `meshd` console script."""

from meshd.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
