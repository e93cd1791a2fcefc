"""Platform posts (TikTok, X): normalised records (``schemas.post``), versions, counts as a
time series and status changes (``models``, ``store``), the watchlist's due re-captures
(``watch``), and one parser per platform (``platforms``)."""
