"""moto's server, handling one request at a time.

moto's backends check a condition and then write without a lock, and `moto_server` serves each
request on its own thread: two concurrent conditional writes to one item (a DynamoDB
`ConditionExpression`, an S3 `If-None-Match: *`) can then both pass, which AWS never allows (a
conditional write is atomic per item). Serializing the requests behind one lock gives the emulator
that atomicity, which the tests of concurrent conditional writes rely on; connections stay
threaded, so idle keep-alive connections block nobody.

Usage: python moto_serialized.py HOST PORT  (started by scripts/services.sh)
"""

import signal
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            # moto answers with whole bodies: materialize them inside the lock.
            return list(app(environ, start_response))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
