#!/usr/bin/python3
"""bench/news_peer.py URLS_FILE [CAP [N_ITEMS]]: the Python peer of `news` in
bench/news.sh: fetch every URL of URLS_FILE (one per line) with aiohttp, at
most CAP (default 50) in flight, parse each body with feedparser, and print
each source's title and its N_ITEMS (default 5) newest items, the way news
does. A summary goes to stderr: "sources N ok N failed N items N".

The straightforward program a Python programmer writes for the job (asyncio
+ aiohttp, feedparser on the loop's thread), not a tuned one. Debian:
python3-aiohttp, python3-feedparser (run it with /usr/bin/python3).
"""
import asyncio
import calendar
import sys

import aiohttp
import feedparser


async def fetch_all(urls, cap, n_items):
    sem = asyncio.Semaphore(cap)
    conn = aiohttp.TCPConnector(limit=cap, limit_per_host=cap)
    timeout = aiohttp.ClientTimeout(total=15)
    done = []
    failed = []

    async def one(url):
        async with sem:
            try:
                async with session.get(url) as r:
                    r.raise_for_status()
                    body = await r.read()
                    ctype = r.headers.get("Content-Type", "")
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                failed.append((url, repr(e)))
                return
            d = feedparser.parse(body, response_headers={"content-type": ctype})
            items = []
            for e in d.entries:
                t = e.get("published_parsed") or e.get("updated_parsed")
                items.append((calendar.timegm(t) if t else 0, e.get("title", ""),
                              e.get("link", "")))
            items.sort(reverse=True)
            done.append((url, d.feed.get("title", url), len(d.entries), items[:n_items]))

    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        await asyncio.gather(*(one(u) for u in urls))
    return done, failed


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: news_peer.py URLS_FILE [CAP [N_ITEMS]]")
    with open(sys.argv[1]) as f:
        urls = [l.split()[0] for l in f if l.strip() and not l.startswith("#")]
    cap = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    n_items = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    done, failed = asyncio.run(fetch_all(urls, cap, n_items))
    out = []
    n = 0
    for url, title, count, items in done:
        n += count
        out.append("%s (%s)\n" % (title, url))
        for t, title_, link in items:
            out.append("  %s  %s\n" % (title_, link))
    for url, why in failed:
        out.append("failed: %s: %s\n" % (url, why))
    sys.stdout.write("".join(out))
    sys.stderr.write("sources %d ok %d failed %d items %d\n"
                     % (len(urls), len(done), len(failed), n))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
