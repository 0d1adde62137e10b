"""Hostile metrics pages for scripts/bench-scrape-memory.sh: `hostile-metrics.py PORT DIR`.

Writes DIR/580k.txt (580,000 series of hostile_series) and DIR/1m.txt (1,000,000), serves
DIR on 127.0.0.1:PORT, and answers /rotating?pad=N with 10,000 series of hostile_series that
are new at every request, each with an N-byte label value.
"""

import functools
import http.server
import itertools
import sys
import urllib.parse

PORT, DIR = int(sys.argv[1]), sys.argv[2]
HEAD = "# HELP hostile_series A family a rule reads.\n# TYPE hostile_series gauge\n"
for name, n in (("580k.txt", 580_000), ("1m.txt", 1_000_000)):
    with open(f"{DIR}/{name}", "w") as f:
        f.write(HEAD)
        f.writelines(f'hostile_series{{id="{i:07d}",kind="attack"}} 1\n' for i in range(n))

requests = itertools.count()


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != "/rotating":
            return super().do_GET()
        pad = "x" * int(urllib.parse.parse_qs(url.query).get("pad", ["6"])[0])
        n = next(requests)
        lines = (f'hostile_series{{id="{n:05d}-{i:07d}",kind="{pad}"}} 1\n' for i in range(10_000))
        body = (HEAD + "".join(lines)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


handler = functools.partial(Handler, directory=DIR)
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), handler).serve_forever()
