"""One module per ad library: ``normalise(payload) -> Iterable[AdRecord]`` from an archived
response (``records.ads.parse.Payload``)."""
