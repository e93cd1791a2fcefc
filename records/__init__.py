"""What the evidence says: per kind, the parser from a snapshot's bytes to normalised records,
their tables, versions and queries. Every record points at the snapshot it came from; the raw
bytes are never replaced by the parsed form. ``records.models`` imports every kind's tables.
"""
