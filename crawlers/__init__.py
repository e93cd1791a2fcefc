"""Page capture: spiders, browser capture, WARC writing, redaction, the pipeline to the store."""
