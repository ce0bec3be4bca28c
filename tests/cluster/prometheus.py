"""A real Prometheus server (Debian's `prometheus`) in a lab namespace: scrapes given targets, loads
the PrometheusRule's groups as its rule file, and answers queries over its HTTP API."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.monitoring import rule_groups
from tests.lab.netlab import Lab

LISTEN = "127.0.0.1:9090"
_GET = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    sys.stdout.write(r.read().decode())
"""


class Prometheus:
    def __init__(
        self, lab: Lab, ns: str, workdir: Path, job: str, targets: list[str], labels: dict[str, str]
    ):
        self.lab, self.ns = lab, ns
        self.workdir = workdir
        self.log = workdir / "prometheus.log"
        (workdir / "rules.yaml").write_text(yaml.safe_dump(rule_groups()))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(workdir / "rules.yaml")],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets, "labels": labels}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = self.lab.popen(
                self.ns,
                [
                    "prometheus",
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address={LISTEN}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://{LISTEN}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        out = self.lab.run(self.ns, [sys.executable, "-c", _GET, url], timeout=20, check=False)
        if out.returncode != 0:
            return {"status": "unreachable", "error": out.stderr[-500:]}
        return json.loads(out.stdout)

    def query(self, expr: str) -> dict[str, Any]:
        """The API's answer to an instant query: status "success" with data, or "error" with why."""
        return self.api("query", query=expr)
