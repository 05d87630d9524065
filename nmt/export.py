"""python -m nmt.export: kept at its old path; the code is nmt.decode.export."""

from nmt.decode.export import main

if __name__ == "__main__":
    raise SystemExit(main())
