"""Statements of reasons (DSA Art. 17 and 24(5)) from the Transparency Database's daily dumps:
streamed from the archived dump into Parquet (``ingest``), queried with DuckDB (``query``)."""
