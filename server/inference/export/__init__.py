"""Exporting SAM3 for serving (ONNX graphs, TensorRT plans, parity gates): ``sam3_export``.

Part of the installed package so that a service installed from a wheel can export its model;
it runs in the model environment (torch, transformers, onnx), never in the service's own.
``python -m server.inference.export`` or the ``s3-export-model`` command run it.
"""
