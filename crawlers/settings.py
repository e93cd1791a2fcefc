"""Scrapy settings of the capture project (scrapy.cfg points here).

Components are wired here, never by imports between them: the exchange recorder sits closest
to the network so that it sees every response as transferred, before decompression and
redirect handling; the archive pipeline turns each finished page into a snapshot.
"""

BOT_NAME = "dsa-evidence"
SPIDER_MODULES = ["crawlers.spiders"]
NEWSPIDER_MODULE = "crawlers.spiders"

TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"

# Scrapy 2.19 runs a remote-control HTTP server and the telnet console by default: both would
# let anyone on the host change a capture while it runs.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False

# A realistic browser user agent; what was sent is recorded with every capture.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
ROBOTSTXT_OBEY = True
HTTPERROR_ALLOW_ALL = True  # a 404 or 500 page is evidence too
RETRY_ENABLED = False  # a failed attempt is an outcome to record, not to hide
DOWNLOAD_TIMEOUT = 30
DOWNLOAD_MAXSIZE = 50 * 1024 * 1024
DOWNLOAD_WARNSIZE = 0
REDIRECT_MAX_TIMES = 10
CONCURRENT_REQUESTS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 4
# Items per *response* handled at once. Our spiders yield one capture per response, and Scrapy
# starts this many worker tasks for every response's output whatever its length: at the
# default (100) that task churn was the largest single cost of the reactor thread.
CONCURRENT_ITEMS = 1
COOKIES_ENABLED = True
LOG_LEVEL = "WARNING"

# The URL policy runs first (before robots.txt is fetched for a URL it refuses) and again for
# every redirect hop; the exchange recorder sits closest to the network.
DOWNLOADER_MIDDLEWARES = {
    "crawlers.middlewares.UrlPolicy": 50,
    "crawlers.middlewares.ExchangeRecorder": 950,
}
ITEM_PIPELINES = {"crawlers.pipelines.ArchivePipeline": 300}

# Only public addresses are fetched unless a run allows private ones (`evidence capture
# --allow-private`, the `allow_private` setting): loopback, link-local (cloud metadata),
# private, CGNAT, multicast and reserved addresses are refused as `private-address`
# (crawlers/urls.py). The networks listed in EVIDENCE_ALLOW_PRIVATE_NETWORKS (CIDR strings)
# are allowed even so, e.g. one intranet server. Names are checked after resolution, by the
# resolver the connection uses (crawlers/resolver.py), so DNS rebinding cannot get past it.
EVIDENCE_ALLOW_PRIVATE = False
EVIDENCE_ALLOW_PRIVATE_NETWORKS: list[str] = []
TWISTED_DNS_RESOLVER = "crawlers.resolver.PolicyResolver"

# Query parameters and headers whose values never reach the archive, on top of the built-in
# list (see crawlers/redaction.py).
REDACT_QUERY_PARAMS: list[str] = []
REDACT_HEADERS: list[str] = []

# Browser capture (`evidence capture --browser`, crawlers/browser.py). crawlers.runner turns
# these into scrapy-playwright's settings (download handler, launch options, contexts) in
# browser mode only, so that plain-HTTP runs never start a browser.
BROWSER_EXECUTABLE = "/usr/bin/chromium"  # Debian's; if missing, Playwright's own Chromium
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",  # no requests of the browser's own in the capture
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
BROWSER_CONTEXTS = 3  # pages rendered at once, each in its own reused context
BROWSER_VIEWPORT = {"width": 1280, "height": 800}
BROWSER_LOCALE = "en-US"
BROWSER_TIMEZONE = "UTC"  # dates rendered by scripts read the same in every capture
BROWSER_NETWORK_IDLE_MS = 500  # idle: no request in flight for this long
BROWSER_NETWORK_IDLE_TIMEOUT = 10  # seconds at most waiting for idle (polling never idles)
BROWSER_SETTLE_MS = 200  # then a pause, for rendering after the last response
BROWSER_SCROLL_MAX_PX = 20000  # scrolling for lazy content stops after this many pixels
BROWSER_SCROLL_MAX_SECONDS = 10  # ... or after this long
BROWSER_SCROLL_IDLE_MS = 100  # quiet network after each scroll step
BROWSER_SCREENSHOT_MAX_PX = 16384  # taller pages are cut (Chromium's texture limit)
BROWSER_RENDER_TIMEOUT = 30  # seconds for a screenshot or a PDF
BROWSER_MAX_PAGE_BYTES = 100 * 1024 * 1024  # response bodies kept per page (DOWNLOAD_MAXSIZE each)
BROWSER_MAX_CONSOLE = 200  # console messages kept per page
# A new tab per page (closed after it) costs Chromium a renderer process each time; reusing
# the context's tab (left on about:blank, storage cleared) is about half the CPU per capture.
BROWSER_REUSE_PAGES = False
