"""The commands behind `cli.py`, one module per area; `cli.py` registers them on its group.

Heavy packages (torch, converters, tinysam) are imported inside the command functions so that
importing these modules, and `python cli.py --help`, stays fast.
"""
