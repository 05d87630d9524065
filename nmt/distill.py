"""python -m nmt.distill: sequence-level distillation's data; the code is nmt.decode.distill."""

from nmt.decode.distill import main

if __name__ == "__main__":
    raise SystemExit(main())
