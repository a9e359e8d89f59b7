"""deepvision serve"""

from __future__ import annotations

import argparse

ORDER = 42


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="a local web page + JSON API for a run or an exported .onnx (FastAPI + uvicorn)",
        description="Serve a model on a local web page (drop an image, see the top-5), with a JSON\n"
                    "endpoint (POST /api/predict, multipart field 'file') and a health endpoint\n"
                    "(GET /health).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  deepvision serve runs/lenet-mnist\n"
               "  deepvision serve model.onnx --port 8080\n"
               "  curl -F file=@cat.jpg http://127.0.0.1:8000/api/predict")
    p.add_argument("source", metavar="RUN_OR_MODEL", help="run directory, or a .onnx file from `deepvision export`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload in MB (default 10)")
    p.add_argument("--max-megapixels", type=float, default=40.0,
                   help="largest image in megapixels, checked before decoding (default 40, at most 1000)")
    p.add_argument("--token", default=None,
                   help="access token every request must carry (Authorization: Bearer TOKEN, or ?token=); "
                        "default: $DEEPVISION_SERVE_TOKEN, else none")
    p.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="close a connection whose request (headers and body) has not arrived whole after this "
                        "many seconds (default 30, 1 to 3600); answering it may take longer")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (runs; .onnx files run on the CPU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from deepvision.apps.serve import serve
    from deepvision.errors import UserError

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    import os

    token = args.token if args.token is not None else os.environ.get("DEEPVISION_SERVE_TOKEN") or None
    if args.token is None and token is not None:  # a bad value is named where it was set
        from deepvision.apps.serve.app import check_token

        check_token(token, "the environment variable DEEPVISION_SERVE_TOKEN")
    serve(args.source, args.host, args.port, max_upload_mb=args.max_upload_mb,
          max_pixels=args.max_megapixels * 1e6, device=args.device, token=token,
          request_timeout=args.request_timeout)
    return 0
