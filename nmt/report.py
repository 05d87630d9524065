"""python -m nmt.report: kept at its old path; the code is nmt.study.report."""

from nmt.study.report import main

if __name__ == "__main__":
    raise SystemExit(main())
