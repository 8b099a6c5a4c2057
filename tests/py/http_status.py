#!/usr/bin/env python3
"""Serves GET on IP:PORT with STATUS and a one-line page, as a device's
web page (a printer's) would. Stops after SECONDS.

Usage: http_status.py IP PORT STATUS SECONDS
"""
import http.server
import sys
import threading
import time


def main():
    ip, port, status, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"receipt printer: ready\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((ip, port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    time.sleep(seconds)
    server.shutdown()


if __name__ == "__main__":
    main()
