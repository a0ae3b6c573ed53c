"""``python -m server.inference.export``: the SAM3 export (see ``sam3_export``)."""

from server.inference.export.sam3_export import main

if __name__ == "__main__":
    raise SystemExit(main())
