"""Analytic sub-models over tables: LightGBM, baselines, reports, ONNX export, Dask training."""
