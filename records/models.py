"""Every table of the records layer, so that one import gives the index its whole schema
(Alembic's comparison with the migrations, and ``Base.metadata``)."""

from records.ads.models import Ad, AdSighting, AdVersion
from records.posts.models import Post, PostCount, PostVersion
from records.reports.models import (
    Report,
    ReportCapture,
    ReportDocument,
    ReportFigure,
    ReportVersion,
)
from records.sor.models import SorDump, SorPart

__all__ = [
    "Ad",
    "AdSighting",
    "AdVersion",
    "Post",
    "PostCount",
    "PostVersion",
    "Report",
    "ReportCapture",
    "ReportDocument",
    "ReportFigure",
    "ReportVersion",
    "SorDump",
    "SorPart",
]
