"""The reader-study web app (Flask): one page, a small JSON API, and the study's images by ID.

Routes::

    GET  /                        the page (mriqa.reader_study.page)
    GET  /app.js                  its script
    GET  /api/study               {"name", "target_per_reader", "images", "groups", "judgments"}
    GET  /api/next?reader=NAME    {"left": {"id", "url"}, "right": {...}, "reader_count", "total",
                                   "target"}; {"done": true, ...} when no other pair exists
    POST /api/judgments           JSON {"id": UUID, "reader", "left", "right", "choice": left|right|tie,
                                   "response_ms"} -> {"stored": true|false (false = already stored, a retry),
                                   "reader_count", "total"}; 400 bad input, 409 id reused with other content
    GET  /images/<ID>.png         an image of the study, looked up by ID in the manifest (anything else: 404)

Images are served only by manifest ID from ``STUDY/images`` (``send_from_directory``; an ID is never a
path, so ``../`` cannot leave the folder). Labels (method, R) are never sent to the page: reading is blind.
Pairs come from :class:`mriqa.reader_study.pairing.PairingState` (active); left/right order is random.
The pair just judged and the pair just served to a reader are not served to that reader again next.
Reader names are not authentication: anyone who can reach the port can submit under any name, so the
server binds 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import socket
import threading

import numpy as np

from mriqa.reader_study import db
from mriqa.reader_study.pairing import PairingState
from mriqa.reader_study.study import IMAGE_DIR, Study

OUTCOME = {"left": 1.0, "right": 0.0, "tie": 0.5}


class PairServer:
    """Thread-safe pair choice backed by the study database (new judgments are read before each choice)."""

    def __init__(self, study: Study, seed: int | None = None):
        self.study = study
        self.index = study.image_index()
        self.ids = [im["id"] for im in study.images]
        self.groups = {im["id"]: im["group"] for im in study.images}
        self.state = PairingState(study.group_index())
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.seen_seq = 0
        self.served: dict[str, tuple[int, int]] = {}

    def _sync(self, conn) -> None:
        for row in db.judgments(conn, self.seen_seq):
            a, b = self.index[row["left_id"]], self.index[row["right_id"]]
            self.state.add(a, b, OUTCOME[row["choice"]])
            self.seen_seq = row["seq"]

    def next_pair(self, conn, reader: str) -> tuple[str, str] | None:
        """(left id, right id) for ``reader``, or None when the study has no other pair."""
        with self.lock:
            self._sync(conn)
            avoid = []
            last = db.last_pair(conn, reader)
            if last is not None:
                avoid.append(tuple(sorted((self.index[last[0]], self.index[last[1]]))))
            if reader in self.served:
                avoid.append(self.served[reader])
            pair = self.state.choose(self.rng, exclude=avoid)
            if pair is None and len(avoid) > 1:  # only the judged pair must not come back
                pair = self.state.choose(self.rng, exclude=avoid[:1])
            if pair is None:
                return None
            self.served[reader] = tuple(sorted(pair))
            i, j = pair if self.rng.random() < 0.5 else (pair[1], pair[0])
            return self.ids[i], self.ids[j]


def create_app(study: Study, seed: int | None = None):
    """The Flask application for ``study``."""
    from flask import Flask, Response, abort, g, jsonify, request, send_from_directory

    from mriqa.reader_study.page import APP_JS, INDEX_HTML

    app = Flask(__name__, static_folder=None)
    app.config["JSON_SORT_KEYS"] = False
    pairs = PairServer(study, seed)
    image_root = (study.root / IMAGE_DIR).resolve()
    target = int(study.manifest.get("target_per_reader", 0))

    def conn():
        if "db" not in g:
            g.db = db.connect(study.db_path)
        return g.db

    @app.teardown_appcontext
    def _close(_exc):
        c = g.pop("db", None)
        if c is not None:
            c.close()

    def bad(message: str, status: int = 400):
        return jsonify({"error": message}), status

    @app.get("/")
    def index():
        html = INDEX_HTML.replace("{{STUDY}}", _escape(study.manifest.get("name", "")))
        return Response(html, mimetype="text/html")

    @app.get("/app.js")
    def script():
        return Response(APP_JS, mimetype="text/javascript")

    @app.get("/api/study")
    def info():
        return jsonify({"name": study.manifest.get("name"), "target_per_reader": target,
                        "images": len(study.images), "groups": len(study.manifest["groups"]),
                        "judgments": db.count(conn())})

    @app.get("/api/next")
    def next_pair():
        try:
            reader = db.check_reader(request.args.get("reader"))
        except ValueError as exc:
            return bad(str(exc))
        c = conn()
        pair = pairs.next_pair(c, reader)
        counts = {"reader_count": db.count(c, reader), "total": db.count(c), "target": target}
        if pair is None:
            return jsonify({"done": True, **counts})
        left, right = pair
        return jsonify({"left": {"id": left, "url": f"/images/{left}.png"},
                        "right": {"id": right, "url": f"/images/{right}.png"}, **counts})

    @app.post("/api/judgments")
    def post_judgment():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return bad("expected a JSON object")
        left, right = body.get("left"), body.get("right")
        if left not in pairs.groups or right not in pairs.groups:
            return bad("unknown image id")
        if pairs.groups[left] != pairs.groups[right]:
            return bad("the two images belong to different content groups")
        ms = body.get("response_ms")
        ms = int(ms) if isinstance(ms, (int, float)) and 0 <= ms < 1e9 else None
        c = conn()
        try:
            stored = db.add_judgment(c, body.get("id"), body.get("reader"), left, right, body.get("choice"), ms)
        except db.ConflictError as exc:
            return bad(str(exc), 409)
        except ValueError as exc:
            return bad(str(exc))
        reader = db.check_reader(body.get("reader"))
        return jsonify({"stored": stored, "reader_count": db.count(c, reader), "total": db.count(c)})

    @app.get("/images/<image_id>.png")
    def image(image_id: str):
        if image_id not in pairs.groups:
            abort(404)
        return send_from_directory(image_root, f"{image_id}.png", mimetype="image/png", max_age=3600)

    return app


def _escape(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def serve(study: Study, host: str = "127.0.0.1", port: int = 8765, seed: int | None = None,
          announce=print) -> None:
    """Serve the app with Werkzeug's threaded WSGI server (one thread per request) until Ctrl-C.

    A port that cannot be bound (in use, not allowed) is an InputError naming ``host:port``; ``announce``
    is called with the page's URL once the socket is listening."""
    from werkzeug.serving import make_server

    from recon.errors import InputError

    where = f"{host}:{port}"
    try:  # bind once ourselves first: werkzeug reports a failed bind by printing and exiting
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the real server does
            probe.bind((host, port))
    except OSError as exc:
        raise InputError(where, f"cannot serve here ({exc.strerror or exc})") from None
    app = create_app(study, seed)
    try:
        server = make_server(host, port, app, threaded=True)
    except (OSError, SystemExit) as exc:  # taken between the probe and here
        raise InputError(where, f"cannot serve here ({getattr(exc, 'strerror', None) or exc})") from None
    announce(f"http://{host}:{server.port}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
