"""python -m nmt.sweep: kept at its old path; the code is nmt.study.sweep."""

from nmt.study.sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
