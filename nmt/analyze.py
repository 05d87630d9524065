"""python -m nmt.analyze: the inference-time analyses; the code is nmt.study.analyses."""

from nmt.study.analyses.command import main

if __name__ == "__main__":
    raise SystemExit(main())
