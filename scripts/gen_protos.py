"""Generate what protos/s3/v1/*.proto state, committed: the Python stubs next to the .proto files,
the OpenAPI document (gateway_rest/openapi.json) and the generated part of docs/contract.md.

``--check`` regenerates into a temporary folder and fails when a committed file differs, so a
changed .proto without regenerated files cannot land.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from google.api import annotations_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = PROTO_ROOT / "s3" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
# googleapis-common-protos ships the .proto sources of google/api (http annotations) and google/rpc.
GOOGLEAPIS_ROOT = Path(annotations_pb2.__file__).resolve().parent.parent.parent
# mypy-protobuf's plugins give typed stubs for messages and for the gRPC servicer/stub classes.
PLUGIN_DIR = Path(sys.executable).parent


DESCRIPTOR_SET = "descriptors.binpb"


def _generate(out_root: Path) -> list[Path]:
    protos = sorted(PACKAGE_DIR.glob("*.proto"))
    include = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"-I{GOOGLEAPIS_ROOT}",
        f"--python_out={out_root}",
        f"--plugin=protoc-gen-mypy={PLUGIN_DIR / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={PLUGIN_DIR / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        f"--grpc_python_out={out_root}",
        # With the comments: they become the OpenAPI document's descriptions.
        f"--descriptor_set_out={out_root / DESCRIPTOR_SET}",
        "--include_source_info",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = sorted(p for p in (out_root / "s3" / "v1").iterdir() if p.name.endswith(GENERATED_SUFFIXES))
    for path in generated:
        # protoc writes imports relative to the include root (`from s3.v1 import ...`); the stubs live
        # in the `protos` package of this project, so make the imports absolute.
        text = re.sub(r"^from s3\.v1 import", "from protos.s3.v1 import", path.read_text(), flags=re.M)
        path.write_text(text)
    return generated


def _documents(descriptor_set: Path) -> dict[Path, str]:
    """The generated documents, built from the committed stubs (just written, unless checking)."""
    sys.path.insert(0, str(ROOT))
    from scripts import contract_docs, wire_enums

    notes = contract_docs.comments(descriptor_set)
    return {
        contract_docs.OPENAPI: contract_docs.openapi_text(notes),
        contract_docs.CONTRACT: contract_docs.contract_text(notes),
        wire_enums.TARGET: wire_enums.text(notes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed generated files are stale")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        generated = _generate(Path(tmp))
        stale = []
        for path in generated:
            target = PACKAGE_DIR / path.name
            if check:
                if not target.exists() or not filecmp.cmp(path, target, shallow=False):
                    stale.append(target.name)
            else:
                shutil.copyfile(path, target)
        for target, text in _documents(Path(tmp) / DESCRIPTOR_SET).items():
            if check:
                if not target.exists() or target.read_text() != text:
                    stale.append(str(target.relative_to(ROOT)))
            else:
                target.write_text(text)
        if check:
            expected = {p.name for p in generated}
            extra = [p.name for p in PACKAGE_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)]
            stale += [name for name in extra if name not in expected]
            if stale:
                print("stale generated files (run `make protos`):", ", ".join(sorted(stale)), file=sys.stderr)
                return 1
            print(f"{len(generated)} generated stubs and the generated documents are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
