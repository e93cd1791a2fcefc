"""Sources that are not Scrapy spiders (dump downloads, files handed over by people).

Each module declares ``SOURCE`` (a ``schemas.SourceSpec`` with ``collect``): a callable that
yields captures, which the jobs layer archives with group commit (``archive_many``).
"""
