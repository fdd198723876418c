"""The typed in-process message bus the actors talk over: `records` (what enters and leaves the
process), `messages` (what the actors send each other), `bus` (the bus), `tracing` (spans per message).

Nothing is imported here, so that reading the record types stays light (the command line's help).
"""
