"""`reer-runtime report`: one self-contained HTML page (inline SVG charts, no network) of a data dir."""
