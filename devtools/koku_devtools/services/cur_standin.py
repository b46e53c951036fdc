"""A stand-in for the AWS Cost and Usage Report API (moto has none): ``DescribeReportDefinitions``.

Point boto3 at it with ``AWS_ENDPOINT_URL_COST_AND_USAGE_REPORT_SERVICE=<url>``. It answers the report
definitions it holds (:attr:`CurStandIn.reports`), refuses unsigned requests as AWS does, and remembers
which access key signed each request.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CurStandIn:
    """The Cost and Usage Report API's DescribeReportDefinitions (JSON 1.1), answering what a test sets;
    requests must be signed (SigV4) like AWS's."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.denied = False
        self.signed_by: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization", "")
                target = self.headers.get("X-Amz-Target", "")
                if not auth.startswith("AWS4-HMAC-SHA256 Credential="):
                    return self._answer(403, {"__type": "MissingAuthenticationTokenException"})
                if target != "AWSOrigamiServiceGatewayService.DescribeReportDefinitions":
                    return self._answer(400, {"__type": "UnknownOperationException"})
                stand_in.signed_by.append(auth.split("Credential=")[1].split("/")[0])
                if stand_in.denied:
                    body = {"__type": "AccessDeniedException", "message": "User: arn:aws:sts::123456789012:x denied"}
                    return self._answer(400, body)
                return self._answer(200, {"ReportDefinitions": stand_in.reports})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def stop(self) -> None:
        self.close()
