"""Reading the exports people already have: each format becomes the same input lines the Ingestor reads.

A row that cannot become a post becomes a line carrying its raw text and the reason, so it is kept
in `rejected.jsonl` like any bad JSON line.
"""
