"""REER: search for the plan that makes a good post most predictable (see docs/reer.md)."""
