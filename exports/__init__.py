"""Export stage: trained checkpoints -> ONNX model bundles (may import training/)."""
