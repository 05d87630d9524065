"""python -m nmt.average: kept at its old path; the code is nmt.decode.average."""

from nmt.decode.average import main

if __name__ == "__main__":
    raise SystemExit(main())
