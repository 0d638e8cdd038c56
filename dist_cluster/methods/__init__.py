"""One package per method over the contract in `base.py`: cgmcr2/, fec/, pici/, unic/."""
