"""Dispatch quality (issue 13): per-ride records and the pure metrics over them.

Only the record format and the metric maths exist so far; the scenario runner that fills the
records from a real platform run (`make quality`) is not built yet."""
