"""Political and issue ads from the ad libraries: normalised records (``schemas.ad``), their
versions and sightings (``models``, ``store``), the special-category flags (``vocabulary``),
and one normaliser per platform (``platforms``)."""
