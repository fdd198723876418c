"""Reading input: lines of JSON events (`lines.py`), and the exports people already have, each
format becoming the same input lines the Ingestor reads (`sources.py` tells them apart).

A row that cannot become a post becomes a line carrying its raw text and the reason, so it is kept
in `rejected.jsonl` like any bad JSON line.
"""
