"""Every table of the records layer, so that one import gives the index its whole schema
(Alembic's comparison with the migrations, and ``Base.metadata``)."""

from records.sor.models import SorDump, SorPart

__all__ = ["SorDump", "SorPart"]
