"""``python -m scripts.export_onnx_trt``: kept for habit and the Makefile; the export itself lives
in the installed package, ``server.inference.export.sam3_export``.

Imported, this name is the packaged module itself (not a copy), so what a caller sets on it is seen
by the export.
"""

import sys

from server.inference.export import sam3_export

if __name__ == "__main__":
    raise SystemExit(sam3_export.main())
sys.modules[__name__] = sam3_export
